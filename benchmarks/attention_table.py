"""Attention on this CPU: time and extra peak memory of every implementation, n = 512 .. 32768.

Run from the repository root:

    .venv/bin/python benchmarks/attention_table.py                      # the full table
    .venv/bin/python benchmarks/attention_table.py --sizes 512 1024 2048 --no-flex   # a few minutes

For each dtype (float32, and bfloat16 where the CPU has bfloat16 arithmetic), each of
non-causal and causal, and each length n, it measures side by side, B=1, H=1, d=64:

- ``naive``: matmul, softmax, matmul (only while its two score matrices fit in ``--naive-limit``);
- ``torch sdpa``: ``torch.nn.functional.scaled_dot_product_attention``, the baseline;
- ``chunked``: ``attnlib.chunked_attention``;
- ``flex dense`` and ``flex window``: compiled ``flex_attention`` with no mask (causal: the
  causal mask) and with a window of 256 (causal: the causal window); the first call of each
  compiles, and its time is the ``compile_s`` column (a new kernel for each n and dtype; the
  two patterns share it). The run compiles into an empty cache of its own, so that the column
  shows what a first run on a new machine costs, not a cache left by an earlier run
  (``--keep-compile-cache`` uses torch's usual cache instead);
- ``sliding window``: ``attnlib.sliding_window_attention(window=256)``, the plain code.

Times are medians of interleaved repeats, ratios are against torch sdpa in the same run, and
memory is the extra peak resident memory of one call in a fresh process (``attnlib.benchmark``;
not measured for flex, whose child would compile again, unless ``--flex-memory``). It prints
one table per dtype and mask with the machine's description, writes every row to a CSV
(default ``attnlib/data/attention_table.csv``, which the quadratic-cost chapter plots) and draws
a log-log plot of time and memory against n (default ``benchmarks/results/attention_table.png``).
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import attnlib  # noqa: E402
from attnlib import benchmark as bm  # noqa: E402
from attnlib import flex  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 256
FIELDS = ["dtype", "causal", "n", "implementation", "median_s", "ratio_to_sdpa", "peak_bytes",
          "compile_s", "runs", "cpu", "cpus", "threads", "torch", "load_average"]


def flex_dense(q, k, v, *, causal=False):
    """flex_attention over every pair (causal: the causal mask); no pattern to skip."""
    window = q.shape[-2]                       # a window as long as the sequence: dense
    return attnlib.sliding_window_attention(q, k, v, window=window, causal=causal, backend="flex")


def flex_window(q, k, v, *, causal=False):
    return attnlib.sliding_window_attention(q, k, v, window=WINDOW, causal=causal, backend="flex")


def sliding_window(q, k, v, *, causal=False):
    return attnlib.sliding_window_attention(q, k, v, window=WINDOW, causal=causal)


def implementations(n: int, dtype: str, with_flex: bool, naive_limit: int) -> dict:
    """``{name: function}`` measured at length ``n``."""
    impls = {"torch sdpa": bm.torch_sdpa}
    if 2 * n * n * torch.tensor([], dtype=getattr(torch, dtype)).element_size() <= naive_limit:
        impls["naive"] = bm.naive_attention
    impls["chunked"] = attnlib.chunked_attention
    if with_flex:
        impls["flex dense"] = flex_dense
        impls["flex window"] = flex_window
    impls["sliding window"] = sliding_window
    return impls


def measure(n: int, dtype: str, causal: bool, args) -> list[dict]:
    """One comparison at length ``n``: a row per implementation."""
    impls = implementations(n, dtype, not args.no_flex, args.naive_limit)
    factories = {name: functools.partial(bm.attention_call, fn, n, dtype=dtype, causal=causal)
                 for name, fn in impls.items()}
    compile_s = {}
    for name in impls:                      # first calls: compilation for flex, warm-up else
        if name.startswith("flex"):
            call = factories[name]()
            before = dict(flex.first_call_seconds())
            call()
            new = {key: s for key, s in flex.first_call_seconds().items() if key not in before}
            compile_s[name] = sum(new.values()) if new else 0.0
    result = bm.compare(factories, baseline="torch sdpa", repeats=args.repeats, warmup=1)
    info = bm.machine()
    rows = []
    for row in result.rows():
        name = row["name"]
        peak = None
        if not args.no_memory and (args.flex_memory or not name.startswith("flex")):
            peak = bm.peak_memory(factories[name])
        rows.append({"dtype": dtype, "causal": causal, "n": n, "implementation": name,
                     "median_s": row["median_s"], "ratio_to_sdpa": row["ratio"],
                     "peak_bytes": peak, "compile_s": compile_s.get(name), "runs": row["runs"],
                     "cpu": info["cpu"], "cpus": info["cpus"], "threads": info["threads"],
                     "torch": info["torch"], "load_average": info["load_average"]})
    return rows


def print_table(rows: list[dict]) -> None:
    head = f"{'n':>6s}  {'implementation':15s}  {'time':>11s}  {'x sdpa':>7s}  {'extra peak':>12s}  {'compile':>8s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        comp = "" if r["compile_s"] is None else f"{r['compile_s']:7.1f}s"
        print(f"{r['n']:6d}  {r['implementation']:15s}  {r['median_s'] * 1e3:9.2f}ms  "
              f"{r['ratio_to_sdpa']:6.2f}x  {bm.format_bytes(r['peak_bytes']):>12s}  {comp:>8s}")
    print()


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r.get(k) is None else r[k]) for k in FIELDS})


def plot(rows: list[dict], path: Path) -> None:
    """Time and memory against n on log-log axes, a column per (dtype, causal), one colour
    per implementation in every panel."""
    groups = list(dict.fromkeys((r["dtype"], r["causal"]) for r in rows))
    names = dict.fromkeys(r["implementation"] for r in rows)
    colour = {name: f"C{i}" for i, name in enumerate(names)}
    fig, axes = plt.subplots(2, len(groups), figsize=(5 * len(groups), 8), squeeze=False)
    for col, (dtype, causal) in enumerate(groups):
        sub = [r for r in rows if (r["dtype"], r["causal"]) == (dtype, causal)]
        for name in dict.fromkeys(r["implementation"] for r in sub):
            pts = [r for r in sub if r["implementation"] == name]
            style = dict(color=colour[name], label=name)
            axes[0, col].loglog([r["n"] for r in pts], [r["median_s"] for r in pts], "o-", **style)
            mem = [r for r in pts if r["peak_bytes"]]
            if mem:
                axes[1, col].loglog([r["n"] for r in mem], [r["peak_bytes"] / bm.MiB for r in mem],
                                    "o-", **style)
        axes[0, col].set_title(f"{dtype}, {'causal' if causal else 'non-causal'}")
        axes[0, col].set_ylabel("median time (s)")
        axes[1, col].set_ylabel("extra peak memory (MiB)")
        for ax in axes[:, col]:
            ax.set_xlabel("sequence length n")
            ax.legend(fontsize=8)
    first = rows[0]
    fig.suptitle(f"{first['cpu']}, {first['cpus']} CPUs, {first['threads']} torch threads, "
                 f"torch {first['torch']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[512, 1024, 2048, 4096, 8192, 16384, 32768])
    parser.add_argument("--dtypes", nargs="+", default=None,
                        help="default: float32, and bfloat16 if the CPU has it")
    parser.add_argument("--causal", choices=["both", "no", "yes"], default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-flex", action="store_true", help="skip the compiled flex kernels")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--flex-memory", action="store_true",
                        help="also measure flex's memory (each child process compiles again)")
    parser.add_argument("--keep-compile-cache", action="store_true",
                        help="compile into torch's usual cache (by default: an empty one)")
    parser.add_argument("--naive-limit", type=float, default=2 ** 31,
                        help="bytes the naive version's two score matrices may take")
    parser.add_argument("--csv", type=Path, default=ROOT / "attnlib" / "data" / "attention_table.csv")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "results" / "attention_table.png")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not args.keep_compile_cache:     # torch.compile reads this before it writes a kernel
        cache = tempfile.TemporaryDirectory(prefix="attention-table-inductor-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name
    if not args.no_flex and not flex.flex_available():
        print("flex_attention cannot compile here (no C++ compiler?): skipping it\n")
        args.no_flex = True
    dtypes = args.dtypes or (["float32", "bfloat16"] if bm.supports_bfloat16() else ["float32"])
    causals = {"both": [False, True], "no": [False], "yes": [True]}[args.causal]
    print(", ".join(f"{key} {value}" for key, value in bm.machine().items()))
    print(f"B=1, H=1, d=64; window {WINDOW}; medians of {args.repeats} interleaved runs\n")
    rows = []
    for dtype in dtypes:
        for causal in causals:
            print(f"{dtype}, {'causal' if causal else 'non-causal'}")
            group = []
            for n in args.sizes:
                group += measure(n, dtype, causal, args)
                write_csv(rows + group, args.csv)          # keep what is measured so far
            print_table(group)
            rows += group
    write_csv(rows, args.csv)
    plot(rows, args.plot)
    print(f"wrote {args.csv} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
