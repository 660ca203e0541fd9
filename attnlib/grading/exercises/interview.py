"""The exercises of chapter 09 (interview questions): inputs, references, what they teach."""

from __future__ import annotations

import numpy as np

from . import Case, Exercise, tensor, torch_seeded
from .attention import SDPA


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _claim_cases(rng: np.random.Generator) -> list[Case]:
    z = [2, 3, 1]
    cases = [Case((z, [0.2447, 0.6652, 0.0900])), Case((z, [0.33, 0.5, 0.17]), {"decimals": 2}),
             Case((z, [0.0900, 0.2447, 0.6652])), Case((z, [7.389, 20.086, 2.718]), {"decimals": 3}),
             Case((z, [0.24, 0.67, 0.09]), {"decimals": 2}), Case((z, [0.24, 0.66, 0.09]), {"decimals": 2}),
             Case((z, [0.2447, 0.6652])), Case((np.array([0.0, 0.0]), np.array([0.5, 0.5])), {"decimals": 6}),
             Case(([1000.0, 1000.0, 1000.0], [0.333, 0.333, 0.333]), {"decimals": 3},
                  label="large scores must not overflow")]
    for _ in range(5):
        x = rng.normal(size=6)
        good = np.round(_softmax(x), 3)
        bad = good.copy()
        bad[0] += 0.002
        cases += [Case((x, good), {"decimals": 3}), Case((x, bad), {"decimals": 3})]
    return cases


def _claim_reference(z, claimed, decimals=4):
    import attnlib

    z, claimed = np.asarray(z, dtype=float), np.asarray(claimed, dtype=float)
    return claimed.shape == z.shape and bool(
        np.all(np.abs(claimed - attnlib.softmax(z)) <= 0.5 * 10.0 ** -decimals + 1e-12))


def _weights_cases(rng: np.random.Generator) -> list[Case]:
    return [Case((rng.normal(size=qs), rng.normal(size=ks))) for qs, ks in
            [((3, 16), (5, 16)), ((2, 4, 7, 8), (2, 4, 9, 8)), ((6, 64), (6, 64)), ((1, 3), (10, 3))]]


def _weights_reference(q, k):
    import attnlib
    return attnlib.scaled_dot_product_attention(q, k, k, return_weights=True)[1]


def _fixed_cases(rng: np.random.Generator) -> list[Case]:
    import torch

    cases = [Case(tuple(tensor(rng.normal(size=shape), torch.float32)
                        for shape in [(2, 4, 8), (2, 6, 8), (2, 6, 8)]), rtol=1.3e-6, atol=1e-5)]
    for sq, sk, dv in [((5, 16), (7, 16), 3), ((2, 3, 5, 4), (2, 3, 9, 4), 6), ((1, 1, 1, 2), (1, 1, 4, 2), 2)]:
        cases.append(Case((tensor(rng.normal(size=sq)), tensor(rng.normal(size=sk)),
                           tensor(rng.normal(size=(*sk[:-1], dv))))))
    return cases


def _fixed_reference(q, k, v):
    import attnlib
    return attnlib.scaled_dot_product_attention(q, k, v)


def _bert_cases(rng: np.random.Generator) -> list[Case]:
    import torch

    import attnlib

    config = attnlib.BertConfig(vocab_size=30, hidden_size=24, num_layers=2, num_heads=3,
                                intermediate_size=48, max_position_embeddings=20, type_vocab_size=2)
    with torch_seeded(rng), torch.no_grad():
        model = attnlib.BertModel(config).eval()
        for parameter in model.embeddings.parameters():   # non-trivial LayerNorm and embeddings
            parameter.add_(0.1 * torch.randn_like(parameter))
    cases = []
    for length in (7, 1, 5, 20):
        ids = torch.from_numpy(rng.integers(0, 30, size=(3, length)))
        types = torch.from_numpy(rng.integers(0, 2, size=(3, length)))
        cases += [Case((model, ids, types)), Case((model, ids), label="token_type_ids=None means type 0")]
    return cases


def _no_grad(function, case: Case):
    import torch

    with torch.no_grad():
        return function(*case.args, **case.kwargs)


def _bert_reference(model, input_ids, token_type_ids=None):
    """The input of the first encoder layer, caught by a forward pre-hook."""
    import torch

    box = {}
    hook = model.layers[0].register_forward_pre_hook(lambda m, a: box.update(x=a[0].detach()))
    with torch.no_grad():
        model(input_ids, token_type_ids)
    hook.remove()
    return box["x"]


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _mha_reference(d_model, n_heads, bias=True):
    import attnlib
    return _count(attnlib.MultiHeadAttention(d_model, n_heads, bias=bias))


def _encoder_reference(d_model, dim_feedforward, *, heads):
    import attnlib
    return _count(attnlib.TransformerEncoderLayer(d_model, heads, dim_feedforward))


def _split_cases(rng: np.random.Generator) -> list[Case]:
    import torch

    positions = (100 * torch.arange(6)[:, None] + torch.arange(8)).float()[None]
    return [Case((positions, 2), label="every head holds all positions, in order")] + [
        Case((tensor(rng.normal(size=shape), torch.float32), h))
        for shape, h in [((2, 5, 12), 3), ((3, 1, 4), 4), ((1, 7, 9), 1), ((2, 4, 16), 8)]]


def _split_reference(x, n_heads):
    from attnlib.multihead import split_heads
    return split_heads(x, n_heads)


def _cost_reference(n, d, heads, bytes_per_element=4):
    import attnlib

    dtype = {2: "float16", 4: "float32", 8: "float64"}[bytes_per_element]
    return (attnlib.attention_flops(n, d, heads=heads)["total"],
            attnlib.attention_memory_bytes(n, d, heads=heads, dtype=dtype)["scores"])


def _crossover_reference(d):
    """The smallest n at which attention costs more FLOPs than an RNN's 4 n d^2."""
    import attnlib

    def more(n):
        return attnlib.attention_flops(n, d)["total"] > 4 * n * d * d
    low, high = 1, 1
    while not more(high):
        high *= 2
    while low < high:  # the smallest n in [low, high] with more(n)
        middle = (low + high) // 2
        low, high = (low, middle) if more(middle) else (middle + 1, high)
    return low


def _saving_reference(n, window, bytes_per_element=4):
    w = min(window, n - 1)
    kept = sum(min(n - 1, i + w) - max(0, i - w) + 1 for i in range(n)) if n <= 10**4 else \
        n * (2 * w + 1) - w * (w + 1)
    return (n * n - kept) * bytes_per_element


def _classifier_call(model_class, case: Case):
    """Build the model, run it with a padding mask and with only the padding changed, and
    backpropagate: ``(parameters, logits, logits with other padding, the query's gradient)``."""
    import torch
    import torch.nn.functional as F

    vocab, classes, d, ids = case.args
    model = model_class(vocab, classes, d=d)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 1 + [0] * 5])
    logits = model(ids, mask)
    changed = ids.clone()
    changed[1, 4:] = (changed[1, 4:] + 1) % vocab
    F.cross_entropy(logits, torch.arange(3) % classes).backward()
    return _count(model), logits.detach(), model(changed, mask).detach(), model.query.grad


def _classifier_check(case: Case, got) -> str | None:
    vocab, classes, d, _ = case.args
    if not isinstance(got, list) or len(got) != 4:
        return "the model could not be built, run and trained"
    parameters, logits, changed, grad = got
    if not isinstance(parameters, int) or parameters != vocab * d + d + d * classes + classes:
        return f"should have {vocab * d + d + d * classes + classes} parameters, got {parameters}"
    if not isinstance(logits, np.ndarray) or logits.shape != (3, classes):
        return f"should give logits of shape (3, {classes})"
    if not isinstance(changed, np.ndarray) or not np.allclose(changed, logits, rtol=1e-6, atol=1e-6):
        return "padding must not change the logits"
    if not isinstance(grad, np.ndarray) or not np.abs(grad).sum() > 0:
        return "the query should learn: its gradient is zero or missing"
    return None


def _js_cases(rng: np.random.Generator) -> list[Case]:
    cases = [Case((np.array([0.7, 0.2, 0.1]),) * 2),
             Case((np.array([1.0, 0.0]), np.array([0.0, 1.0])), label="0 log 0 = 0")]
    for _ in range(5):
        a, b = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
        cases += [Case((a, b)), Case((b, a))]
    P, Q = rng.dirichlet(np.ones(5), size=(3, 4)), rng.dirichlet(np.ones(5), size=(3, 4))
    P[0, 0] = [1, 0, 0, 0, 0]
    Q[0, 0] = [0.5, 0.5, 0, 0, 0]
    return cases + [Case((P, Q))]


def _js_reference(p, q):
    import torch

    p, q = torch.from_numpy(p), torch.from_numpy(q)
    m = (p + q) / 2

    def kl(a):  # KL(a || m), with 0 log 0 = 0
        return torch.special.xlogy(a, torch.where(a > 0, a / m, 1.0)).sum(-1)
    return (0.5 * kl(p) + 0.5 * kl(q)).numpy()


EXERCISES = [
    Exercise("is_softmax_of", _claim_cases, _claim_reference),
    Exercise("attention_weights", _weights_cases, _weights_reference, rtol=1e-9, atol=1e-12,
             teaches=(*SDPA, "attnlib.attention_weights"),
             hint="scale q k^T by 1/sqrt(d) and take a softmax over the keys"),
    Exercise("attention_fixed", _fixed_cases, _fixed_reference, rtol=1e-7, atol=1e-7, teaches=SDPA,
             hint="softmax over the keys (the last axis), then multiply by v"),
    Exercise("bert_first_layer_input", _bert_cases, _bert_reference, rtol=1.3e-6, atol=1e-5,
             call=_no_grad, teaches=("attnlib.BertEmbeddings",),
             hint="add the three embeddings and apply model.embeddings.norm"),
    Exercise("mha_param_count", lambda rng: [
        Case((e, h), {"bias": bias}) for e, h in [(512, 8), (8, 1), (8, 2), (64, 4), (96, 12), (768, 12),
                                                  (30, 5)] for bias in (True, False)],
             _mha_reference),
    Exercise("encoder_layer_param_count", lambda rng: [
        Case((e, f), union={"heads": h}) for e, h, f in [(512, 8, 2048), (8, 2, 16), (768, 12, 3072),
                                                         (64, 4, 64), (30, 3, 7)]],
             _encoder_reference),
    Exercise("split_heads_fixed", _split_cases, _split_reference, rtol=0, atol=0,
             teaches=("attnlib.multihead.split_heads",),
             hint="reshape to (B, L, H, d), then swap L and H"),
    Exercise("attention_cost", lambda rng: [
        Case((n, d, h), {"bytes_per_element": b}) for n, d, h, b in
        [(2048, 64, 12, 4), (1, 1, 1, 4), (512, 64, 8, 2), (100, 32, 3, 8), (4096, 128, 16, 4)]],
             _cost_reference, teaches=("attnlib.attention_flops", "attnlib.attention_memory_bytes"),
             hint="count the score, softmax and weighted-sum FLOPs, and one score per head and pair"),
    Exercise("rnn_attention_crossover", lambda rng: [
        Case((d,)) for d in [64, 1, 2, 3, 7, 16, 100, 128, 513, 1024, 4096]],
             _crossover_reference, teaches=("attnlib.attention_flops",),
             hint="solve n (4 d + 5) > 4 d^2 for the smallest integer n"),
    Exercise("window_saving_bytes", lambda rng: [
        Case((n, w), {"bytes_per_element": b}) for n, w, b in
        [(4096, 256, 4), (1, 0, 4), (5, 0, 4), (5, 1, 2), (10, 3, 8), (10, 9, 4), (10, 50, 4),
         (300, 17, 2), (1000, 999, 4), (10**6, 512, 4)]],
             _saving_reference, teaches=("attnlib.local_mask",),
             hint="count the kept pairs of the band with a formula"),
    Exercise("TopicClassifier", lambda rng: [
        Case((v, c, d, __import__("torch").from_numpy(rng.integers(0, v, size=(3, 6)))))
        for v, c, d in [(300, 6, 16), (50, 2, 8), (1000, 13, 4), (7, 3, 16)]],
             None, call=_classifier_call, check=_classifier_check),
    Exercise("jensen_shannon", _js_cases, _js_reference, rtol=1e-12, atol=1e-12),
]
