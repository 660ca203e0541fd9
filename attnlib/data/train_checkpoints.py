"""The small trained models the chapters analyse, and the script that trains them.

``python -m attnlib.data.train_checkpoints`` trains, with the settings below (fixed
seeds and step counts, on one CPU thread), the three language models of the decoder
chapter (about 3 minutes each: 4, 2 and 1 key/value heads for 4 query heads), written
as ``lm_mha.pt``, ``lm_gqa.pt`` and ``lm_mqa.pt``, and the
tiny BERT of chapter 05 (about a minute), written as ``bert.pt``, next to this file;
``load_checkpoint`` and ``load_bert_checkpoint`` read them back. ``--steps N --out
FOLDER`` makes a quick trial run elsewhere. The chapters import the same settings,
data and helpers, so what they show is what was trained.

The language models read the book's corpus (``attnlib.load_corpus``) as one stream of
word ids: each paragraph is ``[CLS] sentence sentence ... [SEP]``, ``[CLS]`` starting a
text and ``[SEP]`` ending it. BERT reads pairs of consecutive sentences of a paragraph,
``[CLS] A [SEP] B [SEP]``. The last tenth of the paragraphs is held out for both.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .. import load_corpus
from .._common import check_count
from ..bert import IGNORE_INDEX, BertConfig, BertForMaskedLM, mask_tokens
from ..decoder import CausalLM, DecoderConfig, next_token_loss
from ..tokenizer import WordTokenizer

HERE = Path(__file__).parent
HELD_OUT = 0.1                      # share of paragraphs held out for perplexity
# the architecture (LLaMA-style: RoPE, RMSNorm, SwiGLU, no biases, tied embeddings)
MODEL = dict(max_positions=64, d_model=64, num_layers=2, num_heads=4, d_ff=172,
             positions="rope", norm="rmsnorm", feed_forward="swiglu", bias=False)
# the three checkpoints, by their key/value heads for the four query heads: multi-head
# attention, grouped-query attention with two, multi-query attention with one
KV_HEADS = {"mha": 4, "gqa": 2, "mqa": 1}
TRAINING = dict(steps=1500, batch_size=32, lr=3e-3, warmup=50, seed=0)
# chapter 05's BERT: width 64, 2 layers of 4 heads, feed-forward width 128, no dropout
BERT_MODEL = dict(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                  max_position_embeddings=64, dropout=0.0)
BERT_TRAINING = dict(steps=2500, batch_size=64, lr=3e-3, warmup=100, seed=0)


def _corpus():
    """``(tokenizer, train_paragraphs, valid_paragraphs)``: the corpus, its word tokenizer
    and the split of its paragraphs."""
    corpus = load_corpus()
    tokenizer = WordTokenizer.train(s for paragraph in corpus for s in paragraph)
    cut = round(len(corpus) * (1 - HELD_OUT))
    return tokenizer, corpus[:cut], corpus[cut:]


def lm_data():
    """``(tokenizer, train_ids, valid_ids)``: the corpus as two 1-D int64 tensors of word ids."""
    tokenizer, train, valid = _corpus()

    def stream(paragraphs):
        ids = []
        for paragraph in paragraphs:
            ids += [tokenizer.cls_id, *tokenizer.encode(" ".join(paragraph))[0][1:-1], tokenizer.sep_id]
        return torch.tensor(ids, dtype=torch.long)

    return tokenizer, stream(train), stream(valid)


def lm_config(vocab_size: int, kv_heads: str = "mha") -> DecoderConfig:
    """The ``DecoderConfig`` of checkpoint ``kv_heads`` (``"mha"``, ``"gqa"`` or ``"mqa"``)."""
    if kv_heads not in KV_HEADS:
        raise ValueError(f"kv_heads must be one of {sorted(KV_HEADS)}, got {kv_heads!r}")
    return DecoderConfig(vocab_size, num_kv_heads=KV_HEADS[kv_heads], **MODEL)


def random_windows(ids, batch_size: int, length: int, generator: torch.Generator):
    """``(batch_size, length)`` windows of the 1-D ``ids`` at random offsets."""
    starts = torch.randint(0, len(ids) - length + 1, (batch_size,), generator=generator)
    return torch.stack([ids[s:s + length] for s in starts.tolist()])


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, schedule) -> float:
    """One training step from the scalar ``loss``: gradients, the update, the learning-rate
    schedule. Returns the loss as a float."""
    opt.zero_grad()
    loss.backward()
    opt.step()
    schedule.step()
    return loss.item()


def train_lm(config: DecoderConfig, train_ids, *, steps: int = TRAINING["steps"],
             batch_size: int = TRAINING["batch_size"], lr: float = TRAINING["lr"],
             warmup: int = TRAINING["warmup"], seed: int = TRAINING["seed"]):
    """Train a ``CausalLM(config)`` by next-token prediction on windows of ``train_ids``.

    AdamW, a linear warm-up over ``warmup`` steps, then a cosine decay to 0 at ``steps``.
    Returns ``(model, losses)`` with the training loss of every step (a list of floats).
    """
    steps = check_count(steps, "steps", 1)
    torch.manual_seed(seed)
    model = CausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warmup, 1.0) * 0.5 * (
        1 + math.cos(math.pi * min(s / steps, 1.0))))
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        batch = random_windows(train_ids, batch_size, config.max_positions, generator)
        loss = next_token_loss(model(batch), batch)        # teacher forcing: every position at once
        losses.append(optimizer_step(loss, opt, schedule))
    return model.eval(), losses


def bert_config(vocab_size: int) -> BertConfig:
    """The ``BertConfig`` of chapter 05's BERT for a vocabulary of ``vocab_size`` words."""
    return BertConfig(vocab_size=vocab_size, **BERT_MODEL)


def bert_data():
    """``(tokenizer, train, valid)``: every pair of consecutive sentences of a paragraph,
    ``[CLS] A [SEP] B [SEP]``, as two padded batches of ``tokenizer.batch_encode``
    (dicts of ``(N, L)`` int64 tensors ``input_ids``, ``token_type_ids``, ``attention_mask``)."""
    tokenizer, train, valid = _corpus()

    def pairs(paragraphs):
        a, b = zip(*[(p[i], p[i + 1]) for p in paragraphs for i in range(len(p) - 1)])
        return tokenizer.batch_encode(list(a), list(b))

    return tokenizer, pairs(train), pairs(valid)


def length_bucketed_batches(lengths, batch_size: int, generator: torch.Generator):
    """Endless batches of row indices (1-D int64 tensors of ``batch_size``) into the 1-D
    ``lengths``; each batch holds rows of similar length (sorted within random chunks
    of 8 batches), so that little of it is padding."""
    while True:
        order = torch.randperm(len(lengths), generator=generator)
        batches = []
        for chunk in order.split(batch_size * 8):
            chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
            batches += list(chunk.split(batch_size))
        for k in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[k]


def train_bert(config: BertConfig, tokenizer: WordTokenizer, train: dict, *,
               steps: int = BERT_TRAINING["steps"], batch_size: int = BERT_TRAINING["batch_size"],
               lr: float = BERT_TRAINING["lr"], warmup: int = BERT_TRAINING["warmup"],
               seed: int = BERT_TRAINING["seed"]):
    """Pretrain a ``BertForMaskedLM(config)`` by masked-language modelling on the pairs ``train``.

    Each step masks a batch of pairs of similar length (``mask_tokens``: 15% selected,
    80/10/10) and computes the logits only at the selected positions. AdamW, a linear
    warm-up over ``warmup`` steps, then a linear decay to 0 at ``steps``. Returns
    ``(model, losses)`` with the training loss of every step (a list of floats).
    """
    steps = check_count(steps, "steps", 1)
    torch.manual_seed(seed)
    model = BertForMaskedLM(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, foreach=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (1.0 - s / steps))
    generator = torch.Generator().manual_seed(seed + 1)     # batches and masks
    lengths = train["attention_mask"].sum(dim=1)
    batches = length_bucketed_batches(lengths, batch_size, generator)
    losses = []
    for _ in range(steps):
        rows = next(batches)
        length = int(lengths[rows].max())                   # pad only to the longest pair
        inputs, labels = mask_tokens(train["input_ids"][rows, :length], vocab_size=config.vocab_size,
                                     mask_token_id=tokenizer.mask_id, special_ids=tokenizer.special_ids,
                                     generator=generator)
        hidden = model.bert(inputs, train["token_type_ids"][rows, :length],
                            train["attention_mask"][rows, :length]).last_hidden_state
        chosen = labels != IGNORE_INDEX                     # logits only where there is a label
        logits = model.head(hidden[chosen], model.bert.embeddings.word_embeddings.weight)
        loss = torch.nn.functional.cross_entropy(logits, labels[chosen])
        losses.append(optimizer_step(loss, opt, schedule))
    return model.eval(), losses


@torch.no_grad()
def masked_predictions(model: BertForMaskedLM, tokenizer: WordTokenizer, pairs: dict, *, seed: int = 2):
    """``(predictions, targets)``, two 1-D int64 tensors: the model's first choice and the
    original word at every position of ``pairs`` that ``mask_tokens`` selects, masked once
    with a generator seeded ``seed``."""
    inputs, labels = mask_tokens(pairs["input_ids"], vocab_size=tokenizer.vocab_size,
                                 mask_token_id=tokenizer.mask_id, special_ids=tokenizer.special_ids,
                                 generator=torch.Generator().manual_seed(seed))
    chosen = labels != IGNORE_INDEX
    logits = model(inputs, pairs["token_type_ids"], pairs["attention_mask"])
    return logits.argmax(-1)[chosen], labels[chosen]


@torch.no_grad()
def perplexity(model: CausalLM, ids) -> float:
    """``exp`` of the mean next-token loss on the 1-D ``ids``, cut into windows of
    ``max_positions`` tokens (the first token of each window is not predicted)."""
    n = model.config.max_positions
    windows = ids[:len(ids) // n * n].reshape(-1, n)
    return math.exp(next_token_loss(model(windows), windows).item())


def unigram_perplexity(train_ids, ids, vocab_size: int, window: int) -> float:
    """Perplexity on the same targets as ``perplexity`` of the unigram model: every token
    predicted with its frequency in ``train_ids`` (add-one smoothed), ignoring the context."""
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1
    log_p = (counts / counts.sum()).log()
    targets = ids[:len(ids) // window * window].reshape(-1, window)[:, 1:]
    return math.exp(-log_p[targets].mean().item())


def checkpoint_path(kv_heads: str, folder: Path = HERE) -> Path:
    return Path(folder) / f"lm_{kv_heads}.pt"


def load_checkpoint(kv_heads: str = "mha", folder: Path = HERE) -> tuple[CausalLM, list[float]]:
    """``(model, losses)``: the model ``kv_heads`` (``"mha"``, ``"gqa"`` or ``"mqa"``) saved in
    ``folder`` (by default the shipped one), in eval mode, and its training loss at every step."""
    return _load(CausalLM, DecoderConfig, checkpoint_path(kv_heads, folder))


def bert_checkpoint_path(folder: Path = HERE) -> Path:
    return Path(folder) / "bert.pt"


def load_bert_checkpoint(folder: Path = HERE) -> tuple[BertForMaskedLM, list[float]]:
    """``(model, losses)``: chapter 05's BERT saved in ``folder`` (by default the shipped
    one), in eval mode, and its training loss at every step."""
    return _load(BertForMaskedLM, BertConfig, bert_checkpoint_path(folder))


def _save(model, losses: list[float], path: Path) -> None:
    torch.save({"config": asdict(model.config), "state_dict": model.state_dict(), "losses": losses}, path)


def _load(model_class, config_class, path: Path):
    saved = torch.load(path, weights_only=True)
    model = model_class(config_class(**saved["config"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved["losses"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train the small models the chapters analyse.")
    parser.add_argument("--models", nargs="+", choices=["lm", "bert"], default=["lm", "bert"],
                        help="the decoder chapter's language models, chapter 05's BERT (default both)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per model (default: each model's own)")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the .pt files")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if "lm" in args.models:
        tokenizer, train_ids, valid_ids = lm_data()
        unigram = unigram_perplexity(train_ids, valid_ids, tokenizer.vocab_size, MODEL["max_positions"])
        print(f"{len(train_ids)} training tokens, {len(valid_ids)} held out; unigram perplexity {unigram:.2f}")
        steps = args.steps or TRAINING["steps"]
        for kv_heads in KV_HEADS:
            start = time.perf_counter()
            config = lm_config(tokenizer.vocab_size, kv_heads)
            warmup = min(TRAINING["warmup"], max(1, steps // 10))   # a short run warms up briefly
            model, losses = train_lm(config, train_ids, steps=steps, warmup=warmup)
            _save(model, losses, checkpoint_path(kv_heads, args.out))
            print(f"{kv_heads}: final loss {losses[-1]:.3f}, held-out perplexity "
                  f"{perplexity(model, valid_ids):.3f}, {time.perf_counter() - start:.0f} s")
    if "bert" in args.models:
        start = time.perf_counter()
        tokenizer, train, valid = bert_data()
        config = bert_config(tokenizer.vocab_size)
        steps = args.steps or BERT_TRAINING["steps"]
        warmup = min(BERT_TRAINING["warmup"], max(1, steps // 10))
        model, losses = train_bert(config, tokenizer, train, steps=steps, warmup=warmup)
        _save(model, losses, bert_checkpoint_path(args.out))
        predictions, targets = masked_predictions(model, tokenizer, valid)
        print(f"bert: final loss {losses[-1]:.3f}, held-out masked-token accuracy "
              f"{(predictions == targets).float().mean().item():.3f}, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
