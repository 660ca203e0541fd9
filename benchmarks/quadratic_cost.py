"""Chunked attention against torch's fused kernel and a naive matmul-softmax-matmul.

Run from the repository root:

    .venv/bin/python benchmarks/quadratic_cost.py            # about 2-4 minutes on 2 cores
    .venv/bin/python benchmarks/quadratic_cost.py --repeats 3 --no-naive-memory
    .venv/bin/python benchmarks/quadratic_cost.py --threads 1   # steadier on a busy machine

It prints four tables, each measured side by side in one run:

1. Forward time at n=8192, B=1, H=8, d=64, float32: median wall time of
   ``attnlib.chunked_attention`` (default chunk size), of
   ``torch.nn.functional.scaled_dot_product_attention`` (the baseline) and of a
   naive ``softmax(q k^T / sqrt(d)) v``. Target: chunked <= 1.25x torch.
2. Training time (forward plus backward) at the same size: chunked attention's
   tiled backward pass against torch's. Target: chunked <= 2.0x torch.
3. Extra peak memory of the forward pass at n=16384, B=1, H=1, d=64, float32, each
   measured in a fresh process (see ``attnlib.benchmark``), next to one dense fp32
   score matrix (16384^2 * 4 bytes = 1 GiB). Target: chunked <= 1/16 of it (64 MiB).
4. Extra peak memory of a training step, chunked, at n=4096 .. 65536 (and torch's
   at 16384), and how it grows over that range. Target at 16384: at most 1/16 of the
   score matrix.

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
from attnlib.benchmark import (attention_call, compare, format_bytes, machine, naive_attention,
                               peak_memory, torch_sdpa, training_call)

TIME_TARGET = 1.25
TRAINING_TIME_TARGET = 2.0
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
    print(f"chunked / torch: {ratio:.2f}x  ({verdict} the target <= {TIME_TARGET:.2f}x); "
          f"naive / torch: {result.ratio('naive matmul-softmax-matmul'):.2f}x\n")
    return ratio


def training_time_table(n: int, heads: int, d: int, repeats: int) -> float:
    """Print the forward-plus-backward timing table; return chunked / torch."""
    call = functools.partial(training_call, n=n, heads=heads, d=d, dtype="float32")
    result = compare({"torch sdpa": functools.partial(call, torch_sdpa),
                      "attnlib.chunked_attention": functools.partial(call, chunked_attention)},
                     baseline="torch sdpa", repeats=repeats, warmup=1,
                     title=f"Forward + backward time, n={n}, B=1, H={heads}, d={d}, float32")
    print(result)
    ratio = result.ratio("attnlib.chunked_attention")
    verdict = "meets" if ratio <= TRAINING_TIME_TARGET else "MISSES"
    print(f"chunked / torch, forward + backward: {ratio:.2f}x  ({verdict} the target "
          f"<= {TRAINING_TIME_TARGET:.1f}x)\n")
    return ratio


def training_memory_table(sizes: list[int], d: int, target_n: int) -> None:
    """Print the extra peak memory of one training step of chunked attention at each
    size (and of torch's at ``target_n``), next to one dense score matrix, and how it
    grows from the smallest size to the largest."""
    print(f"Extra peak memory of a training step (forward + backward, gradients included), "
          f"B=1, H=1, d={d}, float32")
    print(f"{'n':>6s}  {'implementation':26s}  {'extra peak':>12s}  {'/ score matrix':>14s}")
    rows = [(n, "attnlib.chunked_attention", chunked_attention) for n in sizes]
    rows.append((target_n, "torch sdpa", torch_sdpa))
    chunked = {}
    for n, name, fn in rows:
        dense = attention_memory_bytes(n, d)["scores"]
        extra = peak_memory(functools.partial(training_call, fn, n, d=d))
        print(f"{n:6d}  {name:26s}  {format_bytes(extra):>12s}  {extra / dense:14.4f}")
        if name.startswith("attnlib"):
            chunked[n] = extra
            if n == target_n:
                verdict = "meets" if extra <= MEMORY_TARGET * dense else "MISSES"
                print(f"{'':6s}  ({verdict} the target <= 1/16 = {format_bytes(dense / 16)})")
    first, last = sizes[0], sizes[-1]
    print(f"from n={first} to n={last} ({last // first}x the tokens) the chunked step's extra "
          f"peak grows {chunked[last] / chunked[first]:.1f}x; the dense score matrix "
          f"{(last // first) ** 2}x\n")


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
    parser.add_argument("--no-training", action="store_true",
                        help="skip the forward-plus-backward tables")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice, all cores)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(", ".join(f"{key} {value}" for key, value in machine().items()))
    if load and load[0] > (os.cpu_count() or 1) and torch.get_num_threads() > 1:
        print("note: other programs keep every CPU busy; multi-threaded timings will scatter "
              "(each step waits for all its threads). --threads 1 gives steadier ratios.")
    print()
    time_table(8192, 8, 64, args.repeats)
    if not args.no_training:
        training_time_table(8192, 8, 64, args.repeats)
    memory_table(16384, 64, not args.no_naive_memory)
    if not args.no_training:
        training_memory_table([4096, 8192, 16384, 32768, 65536], 64, 16384)
    return 0


if __name__ == "__main__":
    sys.exit(main())
