"""The exercises of chapter 01 (softmax): inputs, references, what they teach."""

from __future__ import annotations

import numpy as np

from . import Case, Exercise

SOFTMAX_FAMILY = ("attnlib.softmax", "attnlib.log_softmax", "torch.softmax", "torch.log_softmax",
                  "torch.logsumexp")


def _large_and_random(rng: np.random.Generator, f32_atol: float) -> list[Case]:
    """Logits of size 1e3 and 1e4 (float32 too) and random 2-D and 3-D arrays along every axis."""
    cases = [Case((np.array([2.0, 3.0, 1.0]),)),
             Case((np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]),), {"axis": 0}),
             Case((np.array([1000.0, 1001.0, 1002.0]),), label="logits of size 1e3"),
             Case((np.array([-1000.0, -1001.0, -1002.0]),), label="logits of size -1e3"),
             Case((np.array([1e3, -1e3, 0.0]),), label="logits of size 1e3 and -1e3"),
             Case((np.array([[1e4, -1e4, 0.0, 1e4 - 1.0], [-1e4, -1e4, -1e4, -1e4]],
                            dtype=np.float32),), rtol=1e-5, atol=f32_atol,
                  label="float32 logits of size 1e4")]
    x3 = rng.normal(scale=5.0, size=(2, 3, 4))
    cases += [Case((x3.copy(),), {"axis": axis}) for axis in (0, 1, 2, -1, -2)]
    xl = rng.normal(scale=1e3, size=(5, 7))
    cases += [Case((xl.copy(),), {"axis": axis}, atol=1e-9) for axis in (0, 1)]
    return cases


def _softmax(x, axis=-1):
    import attnlib
    return attnlib.softmax(x, axis=axis)


def _log_softmax(x, axis=-1):
    import attnlib
    return attnlib.log_softmax(x, axis=axis)


def _masked_cases(rng: np.random.Generator) -> list[Case]:
    """Excluded huge values, fully masked rows, broadcast masks along every axis."""
    cases = [Case((np.array([2.0, 3.0, 1.0, 5.0]), np.array([True, True, True, False]))),
             Case((np.array([0.0, 1e4]), np.array([True, False])),
                  label="a huge logit that is excluded: take the max over kept entries"),
             Case((np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [-1e3, 1e3, 0.0]]),
                   np.array([[True, False, True], [False, False, False], [True, True, False]])),
                  label="a fully masked row gives zeros"),
             Case((np.zeros((2, 4)), np.zeros((2, 4), dtype=bool)), label="an all-False mask"),
             Case((np.array([[1000.0, 1001.0, 1002.0, -1000.0], [-1000.0, -1001.0, -1002.0, 1000.0]]),
                   np.array([[True, True, True, False], [True, True, True, False]])))]
    x3 = rng.normal(scale=5.0, size=(2, 3, 4))
    m3 = rng.random((2, 3, 4)) < 0.6
    m3[0, 1, :] = False
    m3[1, :, 2] = False
    for mask in (m3, m3[0], m3[0, 0], m3[:, :1, :]):
        cases += [Case((x3.copy(), mask.copy()), {"axis": axis}) for axis in (0, 1, 2, -1)]
    return cases


def _masked_reference(x, mask, axis=-1):
    import attnlib
    return attnlib.softmax(x, axis=axis, mask=mask)


def _strict_call(function, case: Case):
    """numpy warnings (0 / 0, inf - inf, even in a discarded np.where branch) raise."""
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        return function(*case.args, **case.kwargs)


def _excluded_are_zero(case: Case, got) -> str | None:
    x, mask = case.args
    keep = np.broadcast_to(mask, x.shape)
    if got.shape == x.shape and (got[~keep] != 0.0).any():
        return "the excluded entries must be exactly 0"
    return None


def _probabilities(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _jacobian_cases(rng: np.random.Generator) -> list[Case]:
    cases = [Case((_probabilities(rng.normal(scale=2.0, size=shape)),))
             for shape in [(3,), (5,), (4, 3), (2, 3, 4)]]
    cases += [Case((_probabilities(np.array([[1e3, 1e3 - 1.0, -1e3], [0.0, -1000.0, 5.0]])),)),
              Case((np.array([0.0, 1.0, 0.0]),), label="one-hot p"),
              Case((np.array([[1.0], [1.0]]),), label="single entries"),
              Case((np.full(6, 1 / 6),), label="uniform p")]
    return cases


def _jacobian_reference(p):
    """diag(p) - p p^T per row, by torch autograd through a softmax of log(p)."""
    import torch

    p = torch.as_tensor(p, dtype=torch.float64)
    n = p.shape[-1]
    rows = [torch.autograd.functional.jacobian(lambda t: torch.softmax(t, dim=-1), torch.log(r))
            for r in p.reshape(-1, n)]
    return torch.stack(rows).reshape(*p.shape, n).numpy()


EXERCISES = [
    Exercise("stable_softmax", lambda rng: _large_and_random(rng, 1e-6), _softmax,
             teaches=SOFTMAX_FAMILY,
             hint="subtract the maximum along `axis`, then use np.exp and a sum"),
    Exercise("log_softmax_lse", lambda rng: _large_and_random(rng, 2e-3), _log_softmax,
             teaches=SOFTMAX_FAMILY, hint="compute x - max - log(sum(exp(x - max))) with numpy"),
    Exercise("masked_softmax", _masked_cases, _masked_reference, teaches=SOFTMAX_FAMILY,
             hint="replace excluded logits by -inf and write the stable softmax with numpy",
             call=_strict_call, check=_excluded_are_zero),
    Exercise("softmax_jacobian", _jacobian_cases, _jacobian_reference,
             teaches=("torch.autograd.functional.jacobian", "torch.func.jacrev"),
             hint="build diag(p) - p p^T with numpy", atol=1e-12),
]
