"""The exercises of chapter 07 (quadratic cost): inputs, references, what they teach."""

from __future__ import annotations

import numpy as np

from . import Case, Exercise, traced_peak
from .attention import SDPA

MEMORY_N = 2048     # chunked_attention_np's memory case: n queries and keys, chunks of 128


def _costs(n, d_model, heads):
    """``(attention's FLOPs, the projections' FLOPs)`` of a length-``n`` self-attention."""
    import attnlib

    f = attnlib.attention_flops(n, d_model // heads, heads=heads, projections=True)
    return f["scores"] + f["softmax"] + f["weighted_sum"], f["projections"]


def _overtakes_reference(d_model, heads):
    """The smallest ``n >= 1`` at which attention costs at least the projections: a search."""
    def more(n):
        attention, projections = _costs(n, d_model, heads)
        return attention >= projections
    low, high = 1, 1
    while not more(high):
        high *= 2
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if more(middle) else (middle + 1, high)
    return low


def _slope_cases(rng: np.random.Generator) -> list[Case]:
    n = [256, 512, 1024, 2048]
    cases = [Case((n, list(c * np.array(n, dtype=float) ** e)), label=f"y = {c} n^{e}")
             for c, e in [(1.0, 1.0), (5.0, 1.5), (0.01, 3.0), (7.0, 0.0), (2.0, -1.0)]]
    x = np.array([100, 300, 1000, 3000, 10000, 30000])
    y = 2e-8 * x ** 2 * np.exp(rng.normal(scale=0.1, size=x.size))
    order = rng.permutation(x.size)
    return cases + [Case((x, y), label="noisy data: the least-squares slope"),
                    Case((x[order], y[order]), label="the order of the points must not matter"),
                    Case(([1, 10], [1, 100]), atol=1e-12)]


def _slope_reference(n, y):
    return float(np.polyfit(np.log(np.asarray(n, dtype=float)), np.log(np.asarray(y, dtype=float)), 1)[0])


def _stats_cases(rng: np.random.Generator) -> list[Case]:
    big = 1e4 + rng.normal(scale=5.0, size=1000)
    cases = [Case(([big[i:i + 37] for i in range(0, 1000, 37)],), rtol=1e-10,
                  label="scores near 1e4 in chunks of 37"),
             Case(([np.full(4, -np.inf), np.array([]), np.array([1.0, -np.inf, 2.0]), np.full(2, -np.inf),
                    np.array([0.5])],), label="-inf scores contribute exp(-inf) = 0"),
             Case(([np.full(3, -np.inf), np.full(2, -np.inf)],), label="no finite score: (-inf, 0.0)"),
             Case(([],), label="no chunk: (-inf, 0.0)"), Case(([np.array([])],), label="one empty chunk"),
             Case(([np.array([-1e4, -1e4 - 1.0])],), label="very negative scores must not underflow to 0")]
    for _ in range(20):
        x = rng.normal(scale=10.0, size=rng.integers(1, 50))
        cases.append(Case((np.split(x, np.sort(rng.integers(0, x.size + 1, size=3))),)))
    return cases


def _strict(function, case: Case):
    """The call with numpy's floating-point warnings (overflow, invalid, division by 0)
    raised as errors: a stable online softmax never makes them."""
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        return function(*case.args, **case.kwargs)


def _stats_call(function, case: Case):
    """The chunks are given as a generator: they can be read once only."""
    return _strict(function, Case(((chunk for chunk in case.args[0]),)))


def _stats_reference(chunks):
    scores = np.concatenate([np.asarray(c, dtype=float) for c in chunks] + [np.zeros(0)])
    finite = scores[np.isfinite(scores)]
    if not finite.size:
        return -np.inf, 0.0
    m = float(finite.max())
    return m, float(np.exp(finite - m).sum())


def _stats_max_is_exact(case: Case, got) -> str | None:
    if got[0] != _stats_reference(case.args[0])[0]:
        return "m must be exactly the maximum of all the scores"
    return None


def _chunked_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for shape_q, shape_kv, dv, c in [((2, 3, 33, 8), (2, 3, 45, 8), 5, 7), ((4, 20, 6), (4, 20, 6), 6, 1),
                                     ((10, 4), (13, 4), 2, 100), ((1, 4), (1, 4), 3, 1),
                                     ((17, 3), (64, 3), 4, 64)]:
        cases.append(Case((rng.normal(size=shape_q), rng.normal(size=shape_kv),
                           rng.normal(size=shape_kv[:-1] + (dv,))), {"chunk_size": c}))
    q, k, v = rng.normal(size=(3, 2, 40, 16))
    cases.append(Case((100 * q, k, v[..., :4]), {"chunk_size": 8}, rtol=1e-9,
                      label="queries scaled by 100 (scores of size ~1e3) must not overflow"))
    return cases + [Case(tuple(rng.normal(size=(3, MEMORY_N, 16))), {"chunk_size": 128},
                         union={"rows": rng.choice(MEMORY_N, size=8, replace=False)},
                         label=f"n = {MEMORY_N}: 8 rows, the column sums, and a peak memory below a "
                               "third of the full score matrix (work on (Lq, chunk_size) tiles)")]


def _chunked_call(function, case: Case):
    """The output; for n = MEMORY_N, some rows, the column sums and whether the peak
    memory stayed below a third of the (n, n) float64 score matrix."""
    if "rows" not in case.union:
        return _strict(function, case)
    out, peak = traced_peak(lambda: _strict(function, case))
    out = np.asarray(out)
    return out[case.union["rows"]], out.sum(axis=0), peak < MEMORY_N ** 2 * 8 / 3


def _chunked_reference(q, k, v, chunk_size, rows=None):
    import attnlib

    out = attnlib.scaled_dot_product_attention(q, k, v)
    return out if rows is None else (out[rows], out.sum(axis=0), True)


def _work_reference(n, chunk_size):
    """The pairs of every (query block, key block) tile holding a pair j <= i."""
    total = 0
    for q0 in range(0, n, chunk_size):
        q1 = min(q0 + chunk_size, n)
        for k0 in range(0, n, chunk_size):
            if k0 <= q1 - 1:
                total += (q1 - q0) * (min(k0 + chunk_size, n) - k0)
    return total


def _backward_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for shape_q, lk, dv in [((2, 3, 7, 4), 9, 6), ((4, 1, 3), 5, 2), ((16, 8), 16, 8), ((3, 6), 1, 3)]:
        cases.append(Case((rng.normal(size=shape_q), rng.normal(size=shape_q[:-2] + (lk, shape_q[-1])),
                           rng.normal(size=shape_q[:-2] + (lk, dv)),
                           rng.normal(size=shape_q[:-1] + (dv,)))))
    q, k, v, d_out = rng.normal(size=(4, 2, 12, 8))
    return cases + [Case((100 * q, k, v, d_out), rtol=1e-8, atol=1e-10,
                         label="queries scaled by 100 must not overflow")]


def _backward_reference(q, k, v, d_out):
    """``(dq, dk, dv)`` by torch's autograd."""
    import torch

    q, k, v = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    out = torch.softmax(q @ k.transpose(-1, -2) / np.sqrt(q.shape[-1]), dim=-1) @ v
    return tuple(g.numpy() for g in torch.autograd.grad(out, (q, k, v), torch.tensor(d_out)))


EXERCISES = [
    Exercise("attention_overtakes", lambda rng: [
        Case((d, h)) for d, h in [(64, 1), (512, 8), (1024, 16), (4096, 32), (12288, 96), (1, 1), (2, 2),
                                  (10, 5), (3 * 10**6, 3)]],
             _overtakes_reference, teaches=("attnlib.attention_flops", "attnlib.crossover_length"),
             hint="solve n (4 D + 5 H) >= 8 D^2 for the smallest integer n, exactly"),
    Exercise("loglog_slope", _slope_cases, _slope_reference, rtol=0, atol=1e-9),
    Exercise("online_softmax_stats", _stats_cases, _stats_reference, rtol=1e-12, atol=0,
             call=_stats_call, check=_stats_max_is_exact),
    Exercise("chunked_attention_np", _chunked_cases, _chunked_reference, rtol=1e-10, atol=1e-12,
             call=_chunked_call, teaches=(*SDPA, "attnlib.chunked_attention", "attnlib.attention_weights"),
             hint="keep a running maximum, sum and weighted sum over the key blocks"),
    Exercise("causal_chunked_work", lambda rng: [
        Case((n, c)) for n in [1, 2, 3, 7, 10, 31, 64, 100] for c in [1, 2, 3, 5, 8, 16, 64, 200]] + [
        Case((8192, 1024), label="36 tiles of 1024 x 1024"), Case((100, 7))],
             _work_reference, teaches=("attnlib.causal_blocks",),
             hint="for each query block, count the key blocks that start at or before its last row"),
    Exercise("attention_backward", _backward_cases, _backward_reference, rtol=1e-10, atol=1e-12,
             call=_strict, teaches=("torch.autograd.grad", *SDPA),
             hint="recompute the weights P, then dV = P^T dO and dS = P (dP - rowsum(dO O))"),
]
