"""Decoding against torch and transformers: grouped-query attention and cached generation.

Run from the repository root:

    .venv/bin/python benchmarks/decoding.py              # about 1-2 minutes on 2 cores
    .venv/bin/python benchmarks/decoding.py --threads 1  # steadier on a busy machine

It prints two tables, each measured side by side in one run:

1. Grouped-query attention at n=2048, B=1, 16 query heads, 4 key/value heads, d=64,
   float32, causal: ``torch.nn.functional.scaled_dot_product_attention(...,
   enable_gqa=True)`` (the baseline), which ``attnlib.grouped_query_attention`` calls
   for torch tensors without a mask; attnlib's own folded path (the causal mask given
   as a boolean mask, which takes that path); and attention over key/value heads
   repeated with ``repeat_interleave``.
2. Greedy generation of 256 tokens after an 8-token prompt with a LLaMA-style model
   (4 layers, width 256, 8 query heads, 2 key/value heads, random weights):
   ``attnlib.generate`` with and without the KV cache on ``CausalLM.from_hf(model)``,
   next to ``transformers``' own ``model.generate`` with its cache (the baseline).
   The script first checks that all three write the same tokens.

The repeats are interleaved (a, b, c, a, b, c, ...) so that other work on the machine
slows every implementation alike; ratios of medians are what to compare.
"""

from __future__ import annotations

import argparse
import functools

import torch
import torch.nn.functional as F

import attnlib
from attnlib.benchmark import compare

N, HEADS, KV_HEADS, D = 2048, 16, 4, 64
PROMPT, NEW_TOKENS = 8, 256


def gqa_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, HEADS, N, D, generator=g), torch.randn(1, KV_HEADS, N, D, generator=g),
            torch.randn(1, KV_HEADS, N, D, generator=g))


def gqa_call(kind: str):
    q, k, v = gqa_inputs()
    group = HEADS // KV_HEADS
    causal = torch.ones(N, N, dtype=torch.bool).tril()
    calls = {
        "torch SDPA enable_gqa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
        "attnlib folded path (a mask)": lambda: attnlib.grouped_query_attention(q, k, v, mask=causal),
        "repeat_interleave + SDPA": lambda: F.scaled_dot_product_attention(
            q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), is_causal=True),
    }
    return calls[kind]


@functools.lru_cache(maxsize=1)
def models():
    import transformers
    transformers.logging.set_verbosity_error()
    config = transformers.LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=688,
                                      num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                                      max_position_embeddings=PROMPT + NEW_TOKENS, bos_token_id=0,
                                      eos_token_id=None, pad_token_id=0)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(config).eval()
    return hf, attnlib.CausalLM.from_hf(hf)


def prompt():
    return torch.randint(1, 1000, (1, PROMPT), generator=torch.Generator().manual_seed(1))


def generation_call(kind: str):
    hf, ours = models()
    ids = prompt()
    if kind == "transformers generate (cache)":
        return lambda: hf.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                   do_sample=False, pad_token_id=0)
    use_cache = kind == "attnlib generate (cache)"
    return lambda: attnlib.generate(ours, ids, NEW_TOKENS, top_k=1, use_cache=use_cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    gap = (gqa_call("attnlib folded path (a mask)")() - gqa_call("torch SDPA enable_gqa")()).abs().max().item()
    print(f"attnlib's folded path vs SDPA enable_gqa: largest difference {gap:.1e}")
    kinds = ["torch SDPA enable_gqa", "attnlib folded path (a mask)", "repeat_interleave + SDPA"]
    print(compare({kind: functools.partial(gqa_call, kind) for kind in kinds}, baseline=kinds[0],
                  repeats=args.repeats, title=f"1. grouped-query attention, n={N}, H={HEADS}, "
                                              f"H_kv={KV_HEADS}, d={D}, causal, float32"))

    kinds = ["transformers generate (cache)", "attnlib generate (cache)", "attnlib generate (no cache)"]
    outputs = {kind: generation_call(kind)() for kind in kinds}
    same = all(torch.equal(outputs[kinds[0]], out) for out in outputs.values())
    print(f"\nthe three write the same {NEW_TOKENS} tokens: {same}")
    print(compare({kind: functools.partial(generation_call, kind) for kind in kinds}, baseline=kinds[0],
                  repeats=max(1, args.repeats // 2), title=f"2. greedy generation of {NEW_TOKENS} tokens, "
                                                           "LLaMA-style, 4 layers, width 256, 8/2 heads"))


if __name__ == "__main__":
    main()
