"""Measure the wall time and the extra peak memory of a call on the CPU.

Five functions make up the whole interface:

- :func:`time_call` runs a zero-argument callable a few times after a warm-up and
  returns the wall times in seconds (take their median).
- :func:`peak_memory` builds a call in a **fresh process**, runs it, and returns how
  many bytes the resident memory grew at its peak during the call.
- :func:`compare` measures several implementations side by side in one run, the
  repeats interleaved so that a busy machine slows all of them alike, and returns a
  :class:`Comparison` that prints as a table of medians and ratios against a baseline.
- :func:`attention_call` builds an attention call on seeded random inputs, in the
  form that :func:`peak_memory` and :func:`compare` take; :func:`training_call`
  builds a forward and backward pass the same way.

Why a fresh process for memory: torch's CPU allocations are invisible to
``tracemalloc``, and memory that a process has already touched and freed is often
reused without the resident size growing. The child process fixes glibc's ``mmap``
threshold (so that freed large blocks go back to the operating system), runs the call
once to warm up, resets the kernel's high-water mark (``/proc/self/clear_refs``),
and reads ``VmHWM - VmRSS`` around a second call. Where that reset is not available it
falls back to ``ru_maxrss``, which can only under-count. The result counts memory that
was *touched*: ``torch.empty`` or ``numpy.zeros`` of untouched pages costs nothing.

A factory given to :func:`peak_memory` or :func:`compare` travels to the child by
pickle, so it must be importable: a function defined at module level (not in a
notebook cell) or a :func:`functools.partial` of one, such as
``functools.partial(attention_call, torch_sdpa, 4096)``.
"""

from __future__ import annotations

import csv
import ctypes
import functools
import gc
import math
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._common import check_count, check_flag

MiB = 2 ** 20
TABLE_FILE = Path(__file__).with_name("data") / "attention_table.csv"

__all__ = ["time_call", "peak_memory", "compare", "Comparison", "attention_call",
           "training_call", "machine", "supports_bfloat16", "read_table", "TABLE_FILE", "attention_inputs", "torch_sdpa", "naive_attention", "format_bytes", "MiB"]


# --- the machine ----------------------------------------------------------------

def _cpu_info() -> dict[str, str]:
    """The first processor's entries of /proc/cpuinfo (empty where it does not exist)."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def supports_bfloat16() -> bool:
    """True if the CPU has bfloat16 arithmetic (AVX-512 BF16 or AMX), so that bfloat16
    attention is worth timing; elsewhere torch emulates it slowly."""
    flags = set(_cpu_info().get("flags", "").split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def machine() -> dict[str, object]:
    """What a measurement was made on: CPU model, logical CPUs, torch threads and
    version, the vector instructions torch uses, bfloat16 support, the load average."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {"cpu": _cpu_info().get("model name") or platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "vector_isa": torch.backends.cpu.get_cpu_capability(),
            "bfloat16": supports_bfloat16(), "load_average": round(load[0], 1)}


def read_table(path=TABLE_FILE) -> list[dict]:
    """The rows of a CSV written by ``benchmarks/attention_table.py`` (by default the
    one shipped with attnlib, from one run on the machine its ``cpu`` column names).

    Each row is a dict: ``dtype`` (str), ``causal`` (bool), ``n`` (int),
    ``implementation`` (str), ``median_s`` and ``ratio_to_sdpa`` (float),
    ``peak_bytes`` and ``compile_s`` (int / float, or None where not measured),
    ``runs``, ``cpus``, ``threads`` (int), ``cpu`` and ``torch`` (str), and in runs
    that recorded it ``load_average`` (float, the machine's one-minute load).
    """
    kinds = {"causal": lambda x: x == "True", "n": int, "median_s": float,
             "ratio_to_sdpa": float, "peak_bytes": int, "compile_s": float, "runs": int,
             "cpus": int, "threads": int, "load_average": float}
    with open(path, newline="") as f:
        return [{key: (None if value == "" else kinds.get(key, str)(value))
                 for key, value in row.items()} for row in csv.DictReader(f)]


# --- time ---------------------------------------------------------------------

def time_call(fn: Callable[[], object], *, repeats: int = 7, warmup: int = 1) -> list[float]:
    """Wall times in seconds of ``repeats`` calls of ``fn()``, after ``warmup`` calls.

    Take the median (``statistics.median``): it ignores the odd run that another
    process slowed down. CPU torch calls are synchronous, so wall time is the work.
    """
    repeats = check_count(repeats, "repeats", 1)
    for _ in range(check_count(warmup, "warmup", 0)):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


# --- memory -------------------------------------------------------------------

def _status_kib(*keys: str) -> dict[str, int]:
    """Fields of /proc/self/status (e.g. VmRSS, VmHWM) in KiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in keys:
                out[key] = int(value.split()[0])
    return out


def _reset_high_water_mark() -> bool:
    """Set the kernel's peak resident size (VmHWM) back to the current one (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _return_freed_memory() -> None:
    """Make glibc give freed blocks of 64 KiB and more back to the operating system."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024)  # a fixed value turns off glibc's auto-raise
    libc.mallopt(M_TRIM_THRESHOLD, 64 * 1024)
    libc.malloc_trim(0)


def _measure_in_child(make_call, warmup: int) -> int:
    """Body of the child process of :func:`peak_memory`; returns bytes."""
    _return_freed_memory()
    call = make_call()
    for _ in range(warmup):
        call()
    gc.collect()
    _return_freed_memory()
    if sys.platform.startswith("linux") and _reset_high_water_mark():
        before = _status_kib("VmRSS")["VmRSS"]
        result = call()
        peak = _status_kib("VmHWM")["VmHWM"]
        del result
        return max(0, peak - before) * 1024
    # fallback: the peak since the process started, which may hide a smaller call
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = call()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del result
    scale = 1 if sys.platform == "darwin" else 1024   # bytes on macOS, KiB on Linux
    return max(0, peak - before) * scale


def _child(make_call, warmup, threads, conn) -> None:
    try:
        torch.set_num_threads(threads)
        conn.send(("ok", _measure_in_child(make_call, warmup)))
    except BaseException as err:  # report it in the parent instead of printing here
        conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        conn.close()


@functools.lru_cache(maxsize=1)
def _context():
    """The process start method: a fork server on Linux (cheap, torch imported once
    in a server that never ran torch code), otherwise spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["numpy", "torch", "attnlib"])
        return ctx
    return multiprocessing.get_context("spawn")


def peak_memory(make_call: Callable[[], Callable[[], object]], *, warmup: int = 1) -> int:
    """Extra peak resident memory, in bytes, of one call, measured in a fresh process.

    The child process uses the caller's ``torch.get_num_threads()``.

    Args:
        make_call: an importable zero-argument factory (see the module docstring)
            that builds the inputs and returns the zero-argument call to measure.
            Building the inputs is not counted; the call's output is.
        warmup: calls made before the measured one (they load code and lazy state).

    Returns:
        The growth of the peak resident size during the measured call, in bytes.
        It is accurate to a few hundred KiB plus the small blocks the call keeps.
    """
    warmup = check_count(warmup, "warmup", 0)
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(make_call, warmup, torch.get_num_threads(), child))
    proc.start()
    child.close()
    try:
        status, value = parent.recv()
    except EOFError:
        status, value = "error", f"the child process died (exit code {proc.exitcode})"
    finally:
        proc.join()
        parent.close()
    if status != "ok":
        raise RuntimeError(f"peak_memory({make_call!r}) failed: {value}")
    return value


# --- side-by-side comparison ---------------------------------------------------

def format_bytes(n: float | None) -> str:
    """``n`` bytes as MiB with one decimal (or '-' for None)."""
    return "-" if n is None else f"{n / MiB:,.1f} MiB"


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare`: one row per implementation, in the order given.

    ``times[name]`` are the wall times in seconds, ``memory[name]`` the extra peak
    bytes (``None`` when memory was not measured).
    """
    names: tuple[str, ...]
    baseline: str
    times: Mapping[str, Sequence[float]]
    memory: Mapping[str, int | None]
    title: str = ""

    def median(self, name: str) -> float:
        """Median wall time of ``name`` in seconds."""
        return statistics.median(self.times[name])

    def ratio(self, name: str) -> float:
        """Median time of ``name`` over the median time of the baseline."""
        return self.median(name) / self.median(self.baseline)

    def rows(self) -> list[dict]:
        """The table as a list of dicts (for printing elsewhere or saving)."""
        return [{"name": n, "median_s": self.median(n), "ratio": self.ratio(n),
                 "runs": len(self.times[n]), "peak_bytes": self.memory.get(n)}
                for n in self.names]

    def table(self) -> str:
        """A plain-text table: median time, ratio to the baseline, extra peak memory."""
        head = ["implementation", "median time", f"x {self.baseline}", "extra peak memory"]
        body = [[r["name"], f"{r['median_s'] * 1e3:,.1f} ms", f"{r['ratio']:.2f}x",
                 format_bytes(r["peak_bytes"])] for r in self.rows()]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
        lines = [self.title] if self.title else []
        lines += [fmt.format(*head), "  ".join("-" * w for w in widths)]
        lines += [fmt.format(*row) for row in body]
        runs = len(self.times[self.baseline])
        lines.append(f"(medians of {runs} interleaved runs, {torch.get_num_threads()} "
                     f"torch thread(s))")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def compare(factories: Mapping[str, Callable[[], Callable[[], object]]], *, baseline: str,
            repeats: int = 7, warmup: int = 1, memory: bool = False,
            title: str = "") -> Comparison:
    """Time several implementations side by side, and optionally their peak memory.

    Args:
        factories: ``{name: make_call}``; each ``make_call()`` builds its inputs and
            returns the zero-argument call to measure (importable if ``memory``).
        baseline: the name the ratios are taken against (e.g. torch's own kernel).
        repeats: timed runs per implementation, interleaved round-robin.
        warmup: untimed runs of each implementation first.
        memory: also measure each one's extra peak memory with :func:`peak_memory`.
        title: a line printed above the table.

    Returns:
        A :class:`Comparison`; ``print()`` it for the table.
    """
    if baseline not in factories:
        raise ValueError(f"baseline {baseline!r} is not one of {list(factories)}")
    repeats = check_count(repeats, "repeats", 1)
    warmup = check_count(warmup, "warmup", 0)
    memory = check_flag(memory, "memory")
    calls = {name: make() for name, make in factories.items()}
    for _ in range(warmup):
        for call in calls.values():
            call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            times[name] += time_call(call, repeats=1, warmup=0)
    del calls
    gc.collect()
    peaks = {name: (peak_memory(make) if memory else None) for name, make in factories.items()}
    return Comparison(tuple(factories), baseline, times, peaks, title)


# --- attention workloads --------------------------------------------------------

def attention_inputs(n: int, *, batch: int = 1, heads: int = 1, d: int = 64,
                     dtype: str = "float32", backend: str = "torch", seed: int = 0):
    """Seeded standard-normal ``q, k, v``, each of shape ``(batch, heads, n, d)``.

    ``dtype`` is ``"float32"``, ``"float64"`` or (torch only) ``"bfloat16"``;
    ``backend`` is ``"torch"`` or ``"numpy"``.
    """
    n, batch, heads, d = (check_count(x, name, 1) for x, name in
                          ((n, "n"), (batch, "batch"), (heads, "heads"), (d, "d")))
    if dtype not in ("float32", "float64", "bfloat16"):
        raise ValueError(f"dtype must be 'float32', 'float64' or 'bfloat16', got {dtype!r}")
    if backend not in ("torch", "numpy"):
        raise ValueError(f"backend must be 'torch' or 'numpy', got {backend!r}")
    if backend == "numpy" and dtype == "bfloat16":
        raise ValueError("dtype 'bfloat16' needs backend 'torch': numpy has no bfloat16")
    gen = torch.Generator().manual_seed(seed)
    qkv = torch.randn(3, batch, heads, n, d, generator=gen, dtype=getattr(torch, dtype))
    q, k, v = (t.clone() for t in qkv)
    return (q, k, v) if backend == "torch" else tuple(t.numpy() for t in (q, k, v))


def _run(fn, q, k, v, kwargs):
    with torch.inference_mode():
        return fn(q, k, v, **kwargs)


def attention_call(fn: Callable, n: int, *, batch: int = 1, heads: int = 1, d: int = 64,
                   dtype: str = "float32", backend: str = "torch", seed: int = 0,
                   **fn_kwargs) -> Callable[[], object]:
    """A zero-argument call of ``fn(q, k, v, **fn_kwargs)`` on :func:`attention_inputs`.

    Wrap it in :func:`functools.partial` to get a factory for :func:`peak_memory`
    or :func:`compare`: ``partial(attention_call, torch_sdpa, 4096, heads=8)``.
    Torch calls run under ``torch.inference_mode()`` (no autograd bookkeeping).
    """
    q, k, v = attention_inputs(n, batch=batch, heads=heads, d=d, dtype=dtype,
                               backend=backend, seed=seed)
    return functools.partial(_run, fn, q, k, v, fn_kwargs)


def _train(fn, q, k, v, d_out, kwargs):
    for t in (q, k, v):
        t.grad = None
    fn(q, k, v, **kwargs).backward(d_out)
    return q.grad, k.grad, v.grad


def training_call(fn: Callable, n: int, *, batch: int = 1, heads: int = 1, d: int = 64,
                  dtype: str = "float32", seed: int = 0, **fn_kwargs) -> Callable[[], object]:
    """A zero-argument call of one training step through ``fn(q, k, v, **fn_kwargs)``.

    The call runs the forward pass on :func:`attention_inputs` (torch, with
    ``requires_grad``), then the backward pass from a seeded output gradient
    ``d_out (batch, heads, n, d)``, and returns the gradients ``(dq, dk, dv)``,
    each of shape ``(batch, heads, n, d)``. Use it like :func:`attention_call`:
    ``partial(training_call, torch_sdpa, 4096, heads=8)``.
    """
    q, k, v = attention_inputs(n, batch=batch, heads=heads, d=d, dtype=dtype, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    d_out = torch.randn(batch, heads, n, d, generator=gen, dtype=q.dtype)
    return functools.partial(_train, fn, q.requires_grad_(), k.requires_grad_(),
                             v.requires_grad_(), d_out, fn_kwargs)


def torch_sdpa(q, k, v, *, causal: bool = False):
    """Baseline: ``torch.nn.functional.scaled_dot_product_attention`` (torch tensors)."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=check_flag(causal, "causal"))


def naive_attention(q, k, v, *, causal: bool = False):
    """Baseline: matmul, softmax, matmul, holding the full ``(..., n, n)`` scores.

    Shapes: ``q (..., Lq, d)``, ``k (..., Lk, d)``, ``v (..., Lk, dv)`` -> ``(..., Lq, dv)``.
    Works on numpy arrays and torch tensors.
    """
    causal = check_flag(causal, "causal")
    if isinstance(q, np.ndarray):
        s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
        if causal:
            s = np.where(np.tri(*s.shape[-2:], dtype=bool), s, -np.inf)
        p = np.exp(s - s.max(axis=-1, keepdims=True))
        return (p / p.sum(axis=-1, keepdims=True)) @ v
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        s = s.masked_fill(~torch.ones(s.shape[-2:], dtype=torch.bool).tril(), -torch.inf)
    return torch.softmax(s, dim=-1) @ v

