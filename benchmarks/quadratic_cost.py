"""Chunked attention against torch's fused kernel and a naive matmul-softmax-matmul.

Run from the repository root:

    .venv/bin/python benchmarks/quadratic_cost.py            # about 2-4 minutes on 2 cores
    .venv/bin/python benchmarks/quadratic_cost.py --repeats 3 --no-naive-memory
    .venv/bin/python benchmarks/quadratic_cost.py --threads 1   # steadier on a busy machine

It prints two tables, both measured side by side in one run:

1. Time at n=8192, B=1, H=8, d=64, float32: median wall time of
   ``attnlib.chunked_attention`` (default chunk size), of
   ``torch.nn.functional.scaled_dot_product_attention`` (the baseline) and of a
   naive ``softmax(q k^T / sqrt(d)) v``. Target: chunked <= 2.0x torch.
2. Extra peak memory at n=16384, B=1, H=1, d=64, float32, each measured in a fresh
   process (see ``attnlib.benchmark``), next to one dense fp32 score matrix
   (16384^2 * 4 bytes = 1 GiB). Target: chunked <= 1/16 of it (64 MiB).

The repeats are interleaved (a, b, c, a, b, c, ...) so that other work on the
machine slows every implementation alike; ratios of medians are what to compare.
On a machine shared with other busy programs, multi-threaded runs wait for their
threads at every step and the ratios scatter; ``--threads 1`` measures the same
algorithms without those waits.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import torch

from attnlib import attention_flops, attention_memory_bytes, chunked_attention
from attnlib.benchmark import (attention_call, compare, format_bytes, naive_attention,
                               peak_memory, torch_sdpa)

TIME_TARGET = 2.0
MEMORY_TARGET = 1 / 16


def time_table(n: int, heads: int, d: int, repeats: int) -> float:
    """Print the timing table; return chunked / torch."""
    call = functools.partial(attention_call, n=n, heads=heads, d=d, dtype="float32")
    result = compare({"torch sdpa": functools.partial(call, torch_sdpa),
                      "attnlib.chunked_attention": functools.partial(call, chunked_attention),
                      "naive matmul-softmax-matmul": functools.partial(call, naive_attention)},
                     baseline="torch sdpa", repeats=repeats, warmup=1,
                     title=f"Time, n={n}, B=1, H={heads}, d={d}, float32")
    print(result)
    flops = attention_flops(n, d, heads=heads)["total"]
    for name in result.names:
        print(f"  {name:28s} {flops / result.median(name) / 1e9:6.1f} GFLOP/s (cost model)")
    ratio = result.ratio("attnlib.chunked_attention")
    verdict = "meets" if ratio <= TIME_TARGET else "MISSES"
    print(f"chunked / torch: {ratio:.2f}x  ({verdict} the target <= {TIME_TARGET:.1f}x); "
          f"naive / torch: {result.ratio('naive matmul-softmax-matmul'):.2f}x\n")
    return ratio


def memory_table(n: int, d: int, with_naive: bool) -> float:
    """Print the memory table; return chunked extra peak / one dense score matrix."""
    dense = attention_memory_bytes(n, d)["scores"]            # one (n, n) float32 matrix
    call = functools.partial(attention_call, n=n, heads=1, d=d, dtype="float32")
    impls = {"torch sdpa": torch_sdpa, "attnlib.chunked_attention": chunked_attention}
    if with_naive:
        impls["naive matmul-softmax-matmul"] = naive_attention
    print(f"Extra peak memory, n={n}, B=1, H=1, d={d}, float32 "
          f"(one dense score matrix = {format_bytes(dense)})")
    rows = {name: peak_memory(functools.partial(call, fn)) for name, fn in impls.items()}
    model = attention_memory_bytes(n, d, chunk_size=1024)["extra"]
    width = max(map(len, rows))
    print(f"{'implementation':{width}s}  {'extra peak':>12s}  {'/ score matrix':>14s}")
    for name, extra in rows.items():
        print(f"{name:{width}s}  {format_bytes(extra):>12s}  {extra / dense:14.4f}")
    share = rows["attnlib.chunked_attention"] / dense
    verdict = "meets" if share <= MEMORY_TARGET else "MISSES"
    print(f"chunked: {format_bytes(rows['attnlib.chunked_attention'])} = 1/{1 / share:.0f} of one "
          f"score matrix ({verdict} the target <= 1/16 = {format_bytes(dense / 16)}); "
          f"cost model {format_bytes(model)}\n")
    return share


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per implementation")
    parser.add_argument("--no-naive-memory", action="store_true",
                        help="skip the naive memory run (it needs about 2 GiB)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice, all cores)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPU(s), "
          f"load average {' '.join(f'{x:.1f}' for x in load) if load else '?'}")
    if load and load[0] > (os.cpu_count() or 1) and torch.get_num_threads() > 1:
        print("note: other programs keep every CPU busy; multi-threaded timings will scatter "
              "(each step waits for all its threads). --threads 1 gives steadier ratios.")
    print()
    time_table(8192, 8, 64, args.repeats)
    memory_table(16384, 64, not args.no_naive_memory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
