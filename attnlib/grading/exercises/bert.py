"""The exercises of chapter 05 (BERT): inputs, references, what they teach."""

from __future__ import annotations

import math

import numpy as np

from . import Case, Exercise, tensor, torch_seeded

def _embedding_cases(rng: np.random.Generator) -> list[Case]:
    import torch

    import attnlib

    with torch_seeded(rng), torch.no_grad():
        emb = attnlib.bert.BertEmbeddings(attnlib.BertConfig(30, 8, 1, 2, 16, 12, type_vocab_size=3)).eval()
        for p in emb.parameters():
            p.normal_()
    cases = [Case((tensor(rng.integers(0, 30, size=(b, length))), tensor(rng.integers(0, 3, size=(b, length))),
                   emb)) for b, length in [(1, 1), (3, 12), (4, 5)]]
    return cases + [Case((torch.tensor([[3, 3]]), torch.zeros(1, 2, dtype=torch.long), emb),
                         label="the same token at two positions must give two different vectors")]


def _embedding_reference(input_ids, token_type_ids, emb):
    import torch

    with torch.no_grad():
        return emb(input_ids, token_type_ids)


def _positions_added(case: Case, got) -> str | None:
    if case.label and not np.abs(got[0, 0] - got[0, 1]).max() > 1e-3:
        return "positions are not added: the same token gives the same vector"
    return None


def _config_cases(rng: np.random.Generator) -> list[Case]:
    import attnlib

    cases = []
    for _ in range(12):
        heads = int(rng.choice([1, 2, 4]))
        cases.append(Case((attnlib.BertConfig(
            vocab_size=int(rng.integers(5, 501)), hidden_size=heads * int(rng.integers(1, 17)),
            num_layers=int(rng.integers(1, 5)), num_heads=heads, intermediate_size=int(rng.integers(1, 101)),
            max_position_embeddings=int(rng.integers(1, 65)), type_vocab_size=int(rng.integers(1, 5))),)))
    return cases


def _count_reference(config):
    import torch

    import attnlib

    with torch.device("meta"):
        return sum(p.numel() for p in attnlib.BertModel(config).parameters())


def _head_cases(rng: np.random.Generator) -> list[Case]:
    import torch

    import attnlib

    with torch_seeded(rng), torch.no_grad():
        model = attnlib.BertForMaskedLM(attnlib.BertConfig(25, 12, 2, 3, 20, 9)).double().eval()
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    head, words = model.head, model.bert.embeddings.word_embeddings.weight
    cases = []
    for b, length in [(1, 1), (3, 9)]:
        ids = tensor(rng.integers(0, 25, size=(b, length)))
        with torch.no_grad():
            hidden = model.bert(ids).last_hidden_state
        cases.append(Case((hidden, head.dense, head.norm, words, head.bias),
                          union={"model": model, "ids": ids}))
    changed = words.detach().clone()
    changed[3] += 1.0 + tensor(rng.normal(size=12))
    return cases + [Case((tensor(rng.normal(size=(1, 2, 12))), head.dense, head.norm, words.detach().clone(),
                          head.bias), union={"model": model, "changed": changed},
                         label="then with row 3 of word_embeddings changed: only word 3's logit may change")]


def _head_call(function, case: Case):
    """The logits; for the case with a changed matrix, the logits before and after the change."""
    logits = function(*case.args)
    if "changed" not in case.union:
        return logits
    hidden, dense, norm, _, bias = case.args
    return logits, function(hidden, dense, norm, case.union["changed"], bias)


def _head_reference(hidden, dense, norm, word_embeddings, bias, *, model, ids=None, changed=None):
    """``BertForMaskedLM``'s logits; for the changed matrix, its head's before and after."""
    import torch

    with torch.no_grad():
        if changed is None:
            return model(ids)
        return model.head(hidden, word_embeddings), model.head(hidden, changed)


def _tied(case: Case, got) -> str | None:
    if "changed" not in case.union:
        return None
    before, after = got
    moved = np.abs(before[..., 3] - after[..., 3]).max() > 1e-6
    if not (moved and np.array_equal(before[..., :3], after[..., :3])):
        return "the logit of word 3 must come from row 3 of word_embeddings, and only from it"
    return None


def _mask_cases(rng: np.random.Generator) -> list[Case]:
    """A batch with [CLS]/[SEP] columns (rates and spread measured), other special ids,
    and one batch masked three times (generator seeds s, s after another global seed, t)."""
    ids = rng.integers(5, 40, size=(60, 100))
    ids[:, 0], ids[:, -1] = 2, 3
    seeds = [int(s) for s in rng.integers(2**31, size=4)]
    other = {"vocab_size": 60, "mask_id": 7, "special_ids": (0, 7, 9)}
    return [Case((tensor(ids),), {"vocab_size": 40, "mask_id": 4, "special_ids": (0, 1, 2, 3, 4)},
                 union={"seed": seeds[0], "rates": True}, label="rates and spread of the random replacements"),
            Case((tensor(rng.integers(0, 60, size=(40, 50))),), other, union={"seed": seeds[1]},
                 label="special_ids=(0, 7, 9), mask_id=7"),
            Case((tensor(rng.integers(0, 60, size=(20, 50))),), other, union={"seeds": seeds[2:]},
                 label="the same generator seed twice (torch's global seed changed between), then another")]


def _mask_call(function, case: Case):
    """``(inputs, labels, both int64)``, the ids narrowed to int8 (clamped first, so an id out
    of range stays out of range) to keep the published data small; for the case with
    seeds, that of each of the three calls."""
    import torch

    def once(seed):
        inputs, labels = function(*case.args, **case.kwargs, generator=torch.Generator().manual_seed(seed))
        return (inputs.clamp(-128, 127).to(torch.int8), labels.clamp(-128, 127).to(torch.int8),
                inputs.dtype == labels.dtype == torch.int64)
    if "seeds" not in case.union:
        return once(case.union["seed"])
    first, other = case.union["seeds"]
    with torch.random.fork_rng():
        results = [once(first)]
        torch.manual_seed(123)
        return tuple(results + [once(first), once(other)])


def _within(count: int, total: int, p: float, what: str) -> str | None:
    sd = math.sqrt(p * (1 - p) / total)
    if abs(count / total - p) > 5 * sd:
        return f"{what}: got {count / total:.4f}, expected {p} +- {5 * sd:.4f}"
    return None


def _one_mask(result) -> bool:
    """Whether ``result`` has the form of one of :func:`_mask_call`'s results."""
    return (isinstance(result, list) and len(result) == 3 and isinstance(result[2], bool)
            and all(isinstance(a, np.ndarray) for a in result[:2]))


def _mask_check(case: Case, got) -> str | None:
    ids, vocab, mask_id = case.args[0].numpy(), case.kwargs["vocab_size"], case.kwargs["mask_id"]
    special = list(case.kwargs["special_ids"])
    runs = got if "seeds" in case.union else [got]
    if not (isinstance(runs, list) and len(runs) == (3 if "seeds" in case.union else 1)
            and all(_one_mask(run) for run in runs)):
        return "should return (inputs, labels), two tensors"
    if "seeds" in case.union:
        first, again, other = got
        if not all(np.array_equal(a, b) for a, b in zip(first, again)):
            return "the same generator seed must give the same result, whatever torch's global seed"
        if np.array_equal(first[1], other[1]):
            return "different generator seeds must give different selections"
        got = first
    inputs, labels, int64 = got
    if inputs.shape != ids.shape or labels.shape != ids.shape:
        return "inputs and labels must have the shape of input_ids"
    if not int64:
        return "inputs and labels must be int64 tensors"
    selected = labels != -100
    if (selected & np.isin(ids, special)).any():
        return f"special tokens {tuple(special)} must never be selected"
    if (labels[selected] != ids[selected]).any():
        return "labels of selected positions must be the original ids"
    if (inputs[~selected] != ids[~selected]).any():
        return "positions that are not selected must not change"
    replaced = inputs[selected & (inputs != ids) & (inputs != mask_id)]
    if np.isin(replaced, special).any():
        return "random replacements must not be special tokens or [MASK]"
    if replaced.size and (replaced.min() < 0 or replaced.max() >= vocab):
        return "random replacements must be ids in range(vocab_size)"
    if case.union.get("rates"):
        return _rates(ids, inputs, selected, replaced, vocab, mask_id, special)
    return None


def _rates(ids, inputs, selected, replaced, vocab, mask_id, special) -> str | None:
    """The 15% / 80% / 10% / 10% rates (within 5 standard deviations) and the spread of
    the random replacements over the vocabulary."""
    candidates = vocab - len(set(special) | {mask_id})
    normal, n = int((~np.isin(ids, special)).sum()), int(selected.sum())
    for problem in (_within(n, normal, 0.15, "share of the tokens selected"),
                    _within(int((inputs[selected] == mask_id).sum()), n, 0.8,
                            "share of the selected tokens turned into [MASK]"),
                    _within(replaced.size, n, 0.1 * (1 - 1 / candidates),
                            "share of the selected tokens replaced by a random token"),
                    _within(int((inputs[selected] == ids[selected]).sum()), n, 0.1 + 0.1 / candidates,
                            "share of the selected tokens left unchanged")):
        if problem:
            return problem
    if len(np.unique(replaced)) < 0.75 * candidates:
        return (f"random replacements must be spread over the whole vocabulary: only "
                f"{len(np.unique(replaced))} of the {candidates} possible ids were drawn")
    return None


def _loss_cases(rng: np.random.Generator) -> list[Case]:
    import torch
    import torch.nn.functional as F

    cases = []
    for shape, v in [((1, 1), 3), ((4, 9), 11), ((3, 10), 30)]:
        labels = rng.integers(0, v, size=shape)
        labels[rng.random(shape) < 0.5] = -100
        labels.flat[0] = 1
        cases.append(Case((tensor(rng.normal(size=(*shape, v))), tensor(labels))))
    labels = torch.tensor([[2, -100, 0]])
    return cases + [
        Case((F.one_hot(torch.tensor([[2, 1, 0]]), 4).float() * 50, labels), rtol=1.3e-6, atol=1e-5,
             label="perfect predictions"),
        Case((F.one_hot(torch.tensor([[1, 1, 1]]), 4).float() * 50, labels), rtol=1.3e-6, atol=1e-5,
             label="wrong predictions"),
        Case((tensor(rng.normal(size=(1, 3, 4)), torch.float32), torch.full((1, 3), -100)),
             raises="ValueError", label="every label is -100")]


def _loss_call(function, case: Case):
    """``(loss, accuracy, the gradient of the loss with respect to the logits)``."""
    import torch

    logits = case.args[0].clone().requires_grad_(True)
    loss, accuracy = function(logits, case.args[1])
    grad, = torch.autograd.grad(loss, logits)
    return loss, accuracy, grad


def _loss_reference(logits, labels):
    import torch
    import torch.nn.functional as F

    logits = logits.clone().requires_grad_(True)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    grad, = torch.autograd.grad(loss, logits)
    chosen = labels != -100
    accuracy = (logits.argmax(-1)[chosen] == labels[chosen]).double().mean().item()
    return loss.detach(), accuracy, grad


def _loss_check(case: Case, got) -> str | None:
    logits, labels = (a.numpy() for a in case.args)
    chosen = labels != -100
    if (got[2][~chosen] != 0).any():
        return "positions labelled -100 must not get a gradient"
    exact = float((logits.argmax(-1)[chosen] == labels[chosen]).mean())
    if exact in (0.0, 1.0) and got[1] != exact:
        return f"the accuracy should be exactly {exact}, got {got[1]!r}"
    return None


EXERCISES = [
    Exercise("bert_embeddings", _embedding_cases, _embedding_reference, rtol=1.3e-6, atol=1e-5,
             check=_positions_added, teaches=("attnlib.BertEmbeddings",),
             hint="add the three embeddings and apply emb.norm"),
    Exercise("bert_parameter_count", _config_cases, _count_reference, teaches=("attnlib.BertModel",),
             hint="add up the embeddings, the layers' projections, feed-forward and norms, and the pooler"),
    Exercise("mlm_head_logits", _head_cases, _head_reference, rtol=1e-7, atol=1e-7, call=_head_call,
             check=_tied, teaches=("attnlib.BertMLMHead",),
             hint="dense, GELU and norm, then multiply by word_embeddings transposed and add the bias"),
    Exercise("mlm_mask", _mask_cases, None, call=_mask_call, check=_mask_check,
             teaches=("attnlib.mask_tokens",),
             hint="draw the selection, then one uniform number per token for the 80/10/10 split"),
    Exercise("mlm_loss_and_accuracy", _loss_cases, _loss_reference, rtol=1e-7, atol=1e-7,
             call=_loss_call, check=_loss_check),
]
