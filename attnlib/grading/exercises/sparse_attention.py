"""The exercises of chapter 08 (sparse attention): inputs, references, what they teach."""

from __future__ import annotations

import numpy as np

from . import Case, Exercise, traced_peak

PEAK_LIMIT = 16 * 2**20  # bytes banded_attention may allocate for n = 4096, window = 2


def _band_cases(rng: np.random.Generator) -> list[Case]:
    cases = [Case((n, w), {"causal": causal}) for n in (1, 2, 6, 7, 20) for w in (0, 1, 2, 3, 19, 40)
             for causal in (False, True)]
    return cases + [Case((100, 4), label="the count should be (2w + 1) n - w (w + 1)")]


def _band_reference(n, window, causal=False):
    import attnlib
    return attnlib.local_mask(n, window, causal=causal)


def _banded_cases(rng: np.random.Generator) -> list[Case]:
    cases = [Case((rng.normal(size=(n, d)), rng.normal(size=(n, d)), rng.normal(size=(n, dv)), w))
             for n, d, dv, w in [(50, 8, 8, 3), (1, 3, 2, 0), (1, 3, 2, 4), (9, 4, 6, 0), (30, 8, 3, 5),
                                 (30, 8, 3, 29), (17, 2, 5, 50)]]
    cases.append(Case(tuple(rng.normal(size=(40, 8)).astype(np.float32) for _ in range(3)) + (3,),
                      rtol=1e-4, atol=1e-5, label="float32 inputs"))
    return cases + [Case(tuple(rng.normal(size=(4096, 8)) for _ in range(3)) + (2,),
                         label=f"n = 4096: rows 100-109, and at most {PEAK_LIMIT // 2**20} MiB at "
                               "the peak (an (n, n) float64 matrix is 128 MiB)")]


def _banded_call(function, case: Case):
    """The output; for n = 4096, rows 100-109 and whether the peak memory stayed small."""
    if case.args[0].shape[0] < 4096:
        return function(*case.args)
    out, peak = traced_peak(function, *case.args)
    return np.asarray(out)[100:110], peak < PEAK_LIMIT


def _banded_reference(q, k, v, window):
    import attnlib

    n = q.shape[0]
    if n < 4096:
        return attnlib.scaled_dot_product_attention(q, k, v, mask=attnlib.local_mask(n, window))
    rows = attnlib.scaled_dot_product_attention(q[100:110], k[98:112], v[98:112],
                                                mask=attnlib.local_mask(14, 2)[2:12])
    return rows, True


def _global_local_cases(rng: np.random.Generator) -> list[Case]:
    return [Case((n, w, g)) for n, w, g in
            [(10, 1, [0, 7]), (1, 0, []), (1, 0, [0]), (6, 0, []), (12, 2, [11]), (12, 2, [0, 5, 11]),
             (30, 4, [3, 17]), (8, 1, list(range(8))), (9, 20, [4]), (100, 3, [0])]]


def _global_local_reference(n, window, global_idx):
    import attnlib
    return attnlib.longformer_mask(n, window, global_idx)


def _partial_cases(rng: np.random.Generator) -> list[Case]:
    """Attention over two disjoint key sets (attnlib.strided.attention_with_lse); the
    reference is dense attention over their union (``union`` is for the grader only)."""
    from attnlib.strided import attention_with_lse

    q, k, v = rng.normal(size=(2, 3, 9, 5)), rng.normal(size=(2, 3, 11, 5)), rng.normal(size=(2, 3, 11, 2))
    mask = rng.random((9, 11)) < 0.7
    mask[0] = False                       # row 0: no key at all
    split = rng.random((9, 11)) < 0.5
    split[1] = True                       # row 1: everything in set A
    q1, k1, v1 = 40.0 * rng.normal(size=(5, 8)), 40.0 * rng.normal(size=(7, 8)), rng.normal(size=(7, 3))
    alternate = np.arange(7)[None, :] % 2 == 0
    cases = []
    for (q, k, v), keep, in_a, scale, label in [
            ((q, k, v), mask, split, 0.3, "rows with no key in one set or in both"),
            ((q1, k1, v1), np.ones((5, 7), bool), alternate, 1.0, "log-sum-exps of size 1000")]:
        a = attention_with_lse(q, k, v, keep & in_a, scale)
        b = attention_with_lse(q, k, v, keep & ~in_a, scale)
        cases.append(Case((a[0], a[1], b[0], b[1]), label=label,
                          union={"q": q, "k": k, "v": v, "mask": keep, "scale": scale}))
    return cases


def _partial_reference(out_a, lse_a, out_b, lse_b, *, q, k, v, mask, scale):
    import attnlib
    return attnlib.scaled_dot_product_attention(q, k, v, mask=mask, scale=scale)


def _linear_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for shape, dv in [((6, 4), 4), ((1, 3), 2), ((7, 5), 3), ((2, 3, 33, 4), 6)]:
        cases.append(Case((2 * rng.normal(size=shape), 2 * rng.normal(size=shape),
                           rng.normal(size=(*shape[:-1], dv)))))
    q, k, v = (rng.normal(size=(20, 4)) for _ in range(3))
    k2, v2 = k.copy(), v.copy()
    k2[12:] += 3.0
    v2[12:] -= 5.0
    return cases + [Case((q, k, v)), Case((q, k2, v2), label="rows 0-11 must not see positions 12 on")]


def _linear_reference(q, k, v):
    import attnlib
    return attnlib.linear_attention(q, k, v, causal=True)


EXERCISES = [
    Exercise("band_mask", _band_cases, _band_reference, teaches=("attnlib.local_mask",),
             hint="compare |i - j| with the window, with np.arange"),
    Exercise("banded_attention", _banded_cases, _banded_reference, rtol=1e-9, atol=1e-12,
             teaches=("attnlib.sliding_window_attention",), call=_banded_call,
             hint="gather the 2 * window + 1 keys of each query and take their softmax"),
    Exercise("global_local_mask", _global_local_cases, _global_local_reference,
             teaches=("attnlib.longformer_mask",),
             hint="a band with |i - j| <= window, or-ed with the global rows and columns"),
    Exercise("combine_partial", _partial_cases, _partial_reference, rtol=1e-9, atol=1e-12),
    Exercise("causal_linear_attention", _linear_cases, _linear_reference, rtol=1e-9, atol=1e-12,
             teaches=("attnlib.linear_attention",),
             hint="running sums of phi(k) v^T and phi(k) with np.cumsum"),
]
