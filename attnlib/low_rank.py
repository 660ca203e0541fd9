"""Low-rank attention (Linformer, Wang et al., 2020): project the keys' length from n down to r.

Reference semantics::

    k_r = E @ k          # (..., r, d):  E of shape (r, n) mixes the n keys into r
    v_r = F @ v          # (..., r, dv): F of shape (r, n), by default F = E
    out = softmax(q @ k_r^T / sqrt(d)) @ v_r      # scores (..., n, r), not (..., n, n)

The scores are ``n x r``, so time and memory are ``O(n r d)`` and ``O(n r)``:
linear in ``n`` for a fixed ``r``. It is an approximation of softmax attention,
exact only in special cases, and it has no causal form (each projected key mixes
all positions, the future included).
"""

from __future__ import annotations

import numpy as np
import torch

from ._common import as_float_array, as_qkv, check_count
from .attention import scaled_dot_product_attention


def linformer_projection(n: int, r: int, *, seed: int = 0) -> np.ndarray:
    """A random projection of shape ``(r, n)`` with independent ``N(0, 1/n)`` entries.

    Each projected key ``(E @ k)[i]`` is a random mix of the ``n`` keys with the
    variance of one key, so scores and values keep their size. (Entries
    ``N(0, 1/r)``, the Johnson-Lindenstrauss scaling that keeps the length of a
    vector of ``n`` numbers, would multiply that variance by ``n / r``.) Linformer
    itself learns ``E`` and ``F``. Seeded with ``numpy.random.default_rng(seed)``;
    returns float64 numpy (attnlib converts it to the dtype and backend of the keys).
    """
    n = check_count(n, "n", 1)
    r = check_count(r, "r", 1)
    rng = np.random.default_rng(check_count(seed, "seed", 0))
    return rng.normal(scale=1.0 / np.sqrt(n), size=(r, n))


def linformer_attention(q, k, v, *, proj_k, proj_v=None, scale=None):
    """Linformer attention: softmax attention over ``r`` projected keys and values.

    Args:
        q: queries, shape ``(..., Lq, d)``.
        k: keys, shape ``(..., n, d)``.
        v: values, shape ``(..., n, dv)``. All numpy arrays or all torch tensors.
        proj_k: projection ``E`` of shape ``(r, n)`` (or ``(..., r, n)``, broadcast
            over the batch), applied to the keys along their length.
        proj_v: projection ``F`` of the same form for the values; default ``proj_k``.
        scale: factor applied to the scores; default ``1 / sqrt(d)``.

    Returns:
        ``out`` of shape ``(..., Lq, dv)`` and the type of ``q``.
    """
    q, k, v, _ = as_qkv(q, k, v)
    n = k.shape[-2]
    e = _projection(proj_k, "proj_k", k, n)
    f = e if proj_v is None else _projection(proj_v, "proj_v", k, n)
    if f.shape[-2] != e.shape[-2]:
        raise ValueError(f"proj_k and proj_v must project to the same r: got shapes "
                         f"{tuple(e.shape)} and {tuple(f.shape)}")
    return scaled_dot_product_attention(q, e @ k, f @ v, scale=scale)   # (..., Lq, dv)


def _projection(p, name, like, n):
    """``p`` as an array of shape ``(..., r, n)`` in the dtype and backend of ``like``."""
    p = as_float_array(p, name)
    if isinstance(like, torch.Tensor):
        p = torch.as_tensor(p, dtype=like.dtype, device=like.device)
    elif isinstance(p, torch.Tensor):
        raise TypeError(f"{name} must be a numpy array when q, k and v are numpy arrays")
    else:
        p = p.astype(like.dtype, copy=False)
    if p.ndim < 2 or p.shape[-1] != n:
        raise ValueError(f"{name} must have shape (r, n) = (r, {n}) to project {n} keys, "
                         f"got shape {tuple(p.shape)}")
    return p
