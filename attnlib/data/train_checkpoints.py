"""The small language models of the decoder chapter, and the script that trains them.

``python -m attnlib.data.train_checkpoints`` trains the two models with the
settings below (fixed seeds and step counts, about 3 minutes each on one CPU
thread) and writes ``lm_mha.pt`` and ``lm_gqa.pt`` next to this file;
``load_checkpoint`` reads them back. ``--steps N --out FOLDER`` makes a quick
trial run elsewhere. The chapter
imports the same settings, data and helpers, so what it shows is what was trained.

The text is the book's corpus (``attnlib.load_corpus``) as one stream of word ids:
each paragraph is ``[CLS] sentence sentence ... [SEP]``, ``[CLS]`` starting a text
and ``[SEP]`` ending it. The last tenth of the paragraphs is held out.
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
from ..decoder import CausalLM, DecoderConfig, next_token_loss
from ..tokenizer import WordTokenizer

HERE = Path(__file__).parent
HELD_OUT = 0.1                      # share of paragraphs held out for perplexity
# the architecture (LLaMA-style: RoPE, RMSNorm, SwiGLU, no biases, tied embeddings)
MODEL = dict(max_positions=64, d_model=64, num_layers=2, num_heads=4, d_ff=172,
             positions="rope", norm="rmsnorm", feed_forward="swiglu", bias=False)
# the two checkpoints: multi-head attention, and grouped-query attention with one
# key/value head shared by all four query heads (multi-query attention)
KV_HEADS = {"mha": 4, "gqa": 1}
TRAINING = dict(steps=1500, batch_size=32, lr=3e-3, warmup=50, seed=0)


def lm_data():
    """``(tokenizer, train_ids, valid_ids)``: the corpus as two 1-D int64 tensors of word ids."""
    corpus = load_corpus()
    tokenizer = WordTokenizer.train(s for paragraph in corpus for s in paragraph)

    def stream(paragraphs):
        ids = []
        for paragraph in paragraphs:
            ids += [tokenizer.cls_id, *tokenizer.encode(" ".join(paragraph))[0][1:-1], tokenizer.sep_id]
        return torch.tensor(ids, dtype=torch.long)

    cut = round(len(corpus) * (1 - HELD_OUT))
    return tokenizer, stream(corpus[:cut]), stream(corpus[cut:])


def lm_config(vocab_size: int, kv_heads: str = "mha") -> DecoderConfig:
    """The ``DecoderConfig`` of checkpoint ``kv_heads`` (``"mha"`` or ``"gqa"``)."""
    if kv_heads not in KV_HEADS:
        raise ValueError(f"kv_heads must be one of {sorted(KV_HEADS)}, got {kv_heads!r}")
    return DecoderConfig(vocab_size, num_kv_heads=KV_HEADS[kv_heads], **MODEL)


def random_windows(ids, batch_size: int, length: int, generator: torch.Generator):
    """``(batch_size, length)`` windows of the 1-D ``ids`` at random offsets."""
    starts = torch.randint(0, len(ids) - length + 1, (batch_size,), generator=generator)
    return torch.stack([ids[s:s + length] for s in starts.tolist()])


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
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(loss.item())
    return model.eval(), losses


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
    """``(model, losses)``: the model ``kv_heads`` (``"mha"`` or ``"gqa"``) saved in ``folder``
    (by default the shipped one), in eval mode, and its training loss at every step."""
    saved = torch.load(checkpoint_path(kv_heads, folder), weights_only=True)
    model = CausalLM(DecoderConfig(**saved["config"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved["losses"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train the language models of the decoder chapter.")
    parser.add_argument("--steps", type=int, default=TRAINING["steps"], help="training steps per model")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for lm_mha.pt and lm_gqa.pt")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tokenizer, train_ids, valid_ids = lm_data()
    unigram = unigram_perplexity(train_ids, valid_ids, tokenizer.vocab_size, MODEL["max_positions"])
    print(f"{len(train_ids)} training tokens, {len(valid_ids)} held out; unigram perplexity {unigram:.2f}")
    for kv_heads in KV_HEADS:
        start = time.perf_counter()
        config = lm_config(tokenizer.vocab_size, kv_heads)
        warmup = min(TRAINING["warmup"], max(1, args.steps // 10))   # a short run warms up briefly
        model, losses = train_lm(config, train_ids, steps=args.steps, warmup=warmup)
        torch.save({"config": asdict(config), "state_dict": model.state_dict(),
                    "losses": losses}, checkpoint_path(kv_heads, args.out))
        print(f"{kv_heads}: final loss {losses[-1]:.3f}, held-out perplexity "
              f"{perplexity(model, valid_ids):.3f}, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
