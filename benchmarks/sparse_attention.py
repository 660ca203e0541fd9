"""Sparse and local attention against torch's dense fused kernel.

Run from the repository root:

    .venv/bin/python benchmarks/sparse_attention.py              # about 3-5 minutes on 2 cores
    .venv/bin/python benchmarks/sparse_attention.py --no-causal  # only the two targets
    .venv/bin/python benchmarks/sparse_attention.py --threads 1  # steadier on a busy machine
    .venv/bin/python benchmarks/sparse_attention.py --flex       # also the compiled flex kernels

It prints three tables, each measured side by side in one run:

1. Time at n=16384, B=1, H=8, d=64, float32, bidirectional: median wall time of
   ``attnlib.sliding_window_attention(window=256)``, Longformer, BigBird, Linformer
   and linear attention next to ``torch.nn.functional.scaled_dot_product_attention``
   (the baseline, dense). Target: the sliding window takes <= 0.045x torch's time
   (its arithmetic is 0.031x).
2. The same for causal attention (baseline: torch with ``is_causal=True``): the causal
   sliding window, the Sparse Transformer's strided and fixed patterns, causal linear
   attention.
   With ``--flex``, both tables also time each pattern's ``backend="flex"`` (a compiled
   ``flex_attention`` kernel); the warm-up call compiles it, and the compile times are
   printed after the tables.
3. Extra peak memory of the sliding window (window=256, H=8) at n = 4096, 16384 and
   65536, each measured in a fresh process (see ``attnlib.benchmark``). Target: from
   16384 to 65536 (4x the length) the extra memory grows by at most 5x.
4. With ``--pair-cost``: what one query-key pair costs in torch's fused kernel, dense at
   n=16384 and on the sliding window's blocks (``b`` queries against ``b + 2 * 256`` keys,
   ``attnlib.local.blocked_attention``, the kernel call of the plain path), and the time
   ratio the window's 513 keys per query would reach at each cost with no key wasted.

The repeats are interleaved (a, b, c, a, b, c, ...) so that other work on the machine
slows every implementation alike; ratios of medians are what to compare.
"""

from __future__ import annotations

import argparse
import functools
import sys

import torch

import attnlib
from attnlib import flex
from attnlib.benchmark import (attention_call, attention_inputs, compare, format_bytes, machine,
                               peak_memory, torch_sdpa)
from attnlib.local import band_blocks, blocked_attention

N, HEADS, D, WINDOW = 16384, 8, 64, 256
TIME_TARGET = 0.045
MEMORY_TARGET = 5.0


@functools.lru_cache(maxsize=4)
def _projection(n: int, r: int) -> torch.Tensor:
    return torch.as_tensor(attnlib.linformer_projection(n, r), dtype=torch.float32)


def linformer_256(q, k, v):
    """Linformer with a fixed random projection of the n keys onto r = 256."""
    return attnlib.linformer_attention(q, k, v, proj_k=_projection(k.shape[-2], 256))


def sdpa_causal(q, k, v):
    return torch_sdpa(q, k, v, causal=True)


def time_table(title: str, impls: dict, baseline: str, repeats: int):
    call = functools.partial(attention_call, n=N, heads=HEADS, d=D, dtype="float32")
    result = compare({name: functools.partial(call, fn, **kw) for name, (fn, kw) in impls.items()},
                     baseline=baseline, repeats=repeats, warmup=1, title=title)
    print(result)
    return result


def memory_table(lengths=(4096, 16384, 65536)) -> float:
    """Print the memory growth of the sliding window; return extra(64k) / extra(16k)."""
    print(f"Extra peak memory of sliding_window_attention(window={WINDOW}), B=1, H={HEADS}, "
          f"d={D}, float32 (each in a fresh process)")
    print(f"{'n':>7s}  {'extra peak':>12s}  {'/ extra at 16384':>16s}  "
          f"{'torch sdpa':>11s}  {'one dense score matrix':>22s}")
    peaks, dense = {}, {}
    for n in lengths:
        call = functools.partial(attention_call, n=n, heads=HEADS, d=D, dtype="float32")
        peaks[n] = peak_memory(functools.partial(call, attnlib.sliding_window_attention,
                                                 window=WINDOW))
        dense[n] = peak_memory(functools.partial(call, torch_sdpa)) if n <= 16384 else None
    for n in lengths:
        print(f"{n:7d}  {format_bytes(peaks[n]):>12s}  {peaks[n] / peaks[16384]:16.2f}  "
              f"{format_bytes(dense[n]):>11s}  {format_bytes(n * n * HEADS * 4):>22s}")
    growth = peaks[65536] / peaks[16384]
    verdict = "meets" if growth <= MEMORY_TARGET else "MISSES"
    print(f"65536 vs 16384 (4x the length): {growth:.2f}x the extra memory "
          f"({verdict} the target <= {MEMORY_TARGET:.0f}x)\n")
    return growth


def _blocks_call(block: int):
    """The kernel call of the sliding window's plain path on blocks of ``block`` queries,
    its inputs cut beforehand; returns ``(call, query-key pairs it computes)``."""
    q, k, v = attention_inputs(N, heads=HEADS, d=D)
    qb, kb, vb, keep = band_blocks(q, k, v, window=WINDOW, causal=False, block=block)
    pairs = HEADS * qb.shape[-3] * block * kb.shape[-2]
    return functools.partial(blocked_attention, qb, kb, vb, keep, D ** -0.5), pairs


def pair_cost_table(blocks=(32, 64, 128, 192), repeats: int = 5) -> float:
    """Print torch's fused kernel's time per query-key pair, dense and on the window's
    blocks; return the lowest time ratio the window could reach at the blocks' costs."""
    dense_pairs = HEADS * N * N
    made = {"dense (n x n)": (attention_call(torch_sdpa, N, heads=HEADS, d=D), dense_pairs)}
    for b in blocks:
        made[f"blocks of {b} ({b} x {b + 2 * WINDOW})"] = _blocks_call(b)
    pairs = {name: n_pairs for name, (_, n_pairs) in made.items()}
    result = compare({name: (lambda call=call: call) for name, (call, _) in made.items()},
                     baseline="dense (n x n)", repeats=repeats, warmup=1)
    print(f"Torch's fused kernel per query-key pair, n={N}, B=1, H={HEADS}, d={D}, float32")
    print(f"{'kernel call':28s}  {'pairs':>10s}  {'median':>10s}  {'ns per pair':>11s}  "
          f"{'window / dense at this cost':>27s}")
    dense_cost = result.median("dense (n x n)") / dense_pairs
    floors = []
    for name in result.names:
        cost = result.median(name) / pairs[name]
        floor = (2 * WINDOW + 1) * cost / (N * dense_cost)
        if name != "dense (n x n)":
            floors.append(floor)
        print(f"{name:28s}  {pairs[name]:10.2e}  {result.median(name) * 1e3:8.1f}ms  "
              f"{cost * 1e9:11.2f}  {floor:26.4f}x")
    print(f"(medians of {repeats} interleaved runs) with no key wasted, the window's "
          f"{2 * WINDOW + 1} keys per query at the blocks' lowest cost per pair take "
          f"{min(floors):.4f}x the dense kernel's time (target <= {TIME_TARGET}x)\n")
    return min(floors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per implementation")
    parser.add_argument("--no-causal", action="store_true", help="skip the causal table")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice, all cores)")
    parser.add_argument("--flex", action="store_true",
                        help="also time backend='flex' (compiles one kernel per pattern)")
    parser.add_argument("--pair-cost", action="store_true",
                        help="also time torch's kernel per query-key pair, dense and on blocks")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.flex and not flex.flex_available():
        print("flex_attention cannot compile here (no C++ compiler?): skipping it")
        args.flex = False
    print(", ".join(f"{key} {value}" for key, value in machine().items()), "\n")

    def with_flex(impls):
        """Add a ``backend="flex"`` row after every attnlib pattern, if asked."""
        if not args.flex:
            return impls
        out = {}
        for name, (fn, kw) in impls.items():
            out[name] = (fn, kw)
            if fn in (attnlib.sliding_window_attention, attnlib.longformer_attention,
                      attnlib.bigbird_attention, attnlib.strided_attention):
                # bound here: attention_call's own `backend` means numpy or torch inputs
                out[name + " [flex]"] = (functools.partial(fn, backend="flex"), kw)
        return out

    sliding = f"sliding_window(window={WINDOW})"
    result = time_table(
        f"Time, n={N}, B=1, H={HEADS}, d={D}, float32, bidirectional",
        with_flex({"torch sdpa (dense)": (torch_sdpa, {}),
         sliding: (attnlib.sliding_window_attention, dict(window=WINDOW)),
         f"longformer(window={WINDOW}, 16 global)": (attnlib.longformer_attention,
                                                    dict(window=WINDOW, global_tokens=list(range(16)))),
         "bigbird(block=64, 3+1+2 blocks)": (attnlib.bigbird_attention, dict(block_size=64)),
         "linformer(r=256)": (linformer_256, {}),
         "linear_attention": (attnlib.linear_attention, {})}),
        "torch sdpa (dense)", args.repeats)
    ratio = result.ratio(sliding)
    verdict = "meets" if ratio <= TIME_TARGET else "MISSES"
    print(f"sliding window / torch sdpa: {ratio:.3f}x ({verdict} the target <= {TIME_TARGET}x)\n")

    if not args.no_causal:
        time_table(
            f"Time, n={N}, B=1, H={HEADS}, d={D}, float32, causal",
            with_flex({"torch sdpa (causal)": (sdpa_causal, {}),
             f"sliding_window(window={WINDOW}, causal)": (attnlib.sliding_window_attention,
                                                          dict(window=WINDOW, causal=True)),
             "strided(stride=128)": (attnlib.strided_attention, dict(stride=128)),
             "fixed(stride=128)": (attnlib.fixed_attention, dict(stride=128)),
             "linear_attention(causal)": (attnlib.linear_attention, dict(causal=True))}),
            "torch sdpa (causal)", args.repeats)
        print()
    for (pattern, shape, _, dtype), seconds in flex.first_call_seconds().items():
        print(f"flex {pattern} {tuple(shape)} {dtype}: first call (compile + run) {seconds:.1f} s")

    if args.pair_cost:
        pair_cost_table(repeats=args.repeats)
    growth = memory_table()
    print(f"summary: time {ratio:.3f}x torch sdpa (target <= {TIME_TARGET}x); "
          f"memory 16k -> 64k {growth:.2f}x (target <= {MEMORY_TARGET:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
