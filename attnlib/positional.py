"""Positional information for attention: sinusoidal encodings, RoPE and ALiBi.

Attention by itself treats its keys as a set. Three ways to tell it where each
token sits:

* ``sinusoidal_encoding``: a fixed ``(n_positions, d_model)`` table added to the
  token embeddings (absolute positions);
* ``apply_rope``: rotate pairs of query and key features by angles proportional to
  the position, so that ``q_i . k_j`` depends on the offset ``j - i`` only;
* ``alibi_slopes`` / ``alibi_bias``: add ``-m_h * |i - j|`` to the scores of head
  ``h``, a penalty that grows linearly with the distance.

All three use the frequencies ``base ** (-2i / d)`` for pair ``i`` (RoPE, sinusoidal)
or the geometric slopes of the ALiBi paper.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._common import (array_namespace, as_float_array, check_count, check_features,
                      check_positive)


def _inverse_frequencies(d: int, base: float) -> np.ndarray:
    """Angular frequency ``base ** (-2i / d)`` of feature pair ``i``, shape ``(ceil(d / 2),)``."""
    return base ** (-np.arange(0, d, 2, dtype=np.float64) / d)


def sinusoidal_encoding(n_positions: int, d_model: int, base: float = 10000.0) -> np.ndarray:
    """The sinusoidal position table of "Attention Is All You Need".

    ``PE[p, 2i] = sin(p / base**(2i / d_model))`` and
    ``PE[p, 2i + 1] = cos(p / base**(2i / d_model))``.

    Args:
        n_positions: number of positions ``p = 0, ..., n_positions - 1`` (>= 0).
        d_model: feature size (>= 1). An odd ``d_model`` is allowed: the last
            column is then a sine without its cosine partner.
        base: the wavelength scale (> 0), 10000 in the paper.

    Returns:
        float64 numpy array of shape ``(n_positions, d_model)``; use
        ``torch.from_numpy`` for a tensor.
    """
    n = check_count(n_positions, "n_positions", 0)
    d = check_count(d_model, "d_model", 1)
    base = check_positive(base, "base")
    angles = np.arange(n, dtype=np.float64)[:, None] * _inverse_frequencies(d, base)  # (n, ceil(d/2))
    pe = np.empty((n, d))
    pe[:, 0::2] = np.sin(angles)
    pe[:, 1::2] = np.cos(angles[:, : d // 2])
    return pe


def apply_rope(x, positions=None, base: float = 10000.0):
    """Rotary position embedding (RoPE) of queries or keys ``x``.

    Features are rotated in interleaved pairs, as in the RoFormer paper: pair
    ``(x[..., 2i], x[..., 2i + 1])`` of the token at position ``p`` is turned by the
    angle ``p * base**(-2i / d)``. Since rotations compose, the score
    ``apply_rope(q, [m]) . apply_rope(k, [n])`` depends on ``n - m`` only.
    (Hugging Face's LLaMA pairs feature ``i`` with ``i + d/2`` instead, the
    "rotate half" layout; the two agree after reordering the features as
    ``[0, 2, 4, ..., 1, 3, 5, ...]``.)

    Args:
        x: numpy array or torch tensor of shape ``(..., L, d)`` with ``d`` even.
        positions: the position of each token, real numbers of a shape that
            broadcasts to ``(..., L)`` without enlarging it, e.g. ``(L,)`` or
            ``(B, 1, L)``; default ``0, 1, ..., L - 1``.
        base: the wavelength scale (> 0), 10000 by default.

    Returns:
        The rotated features, of the shape, type and dtype of ``x``. The angles
        are computed in float64 and the rotation is differentiable in torch.
    """
    x = as_float_array(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., L, d), got shape {tuple(x.shape)}")
    check_features(x, "x")
    *lead, length, d = x.shape
    if d % 2:
        raise ValueError(f"x must have an even feature size d to rotate pairs of features, "
                         f"got shape {tuple(x.shape)} with d = {d}")
    base = check_positive(base, "base")
    pos = _positions(positions, length, tuple(x.shape[:-1]))
    angles = pos[..., None] * _inverse_frequencies(d, base)           # (..., L, d/2), float64
    cos, sin = np.cos(angles), np.sin(angles)
    if isinstance(x, torch.Tensor):
        cos, sin = (torch.from_numpy(a).to(device=x.device, dtype=x.dtype) for a in (cos, sin))
    else:
        cos, sin = cos.astype(x.dtype, copy=False), sin.astype(x.dtype, copy=False)
    x1, x2 = x[..., 0::2], x[..., 1::2]                               # (..., L, d/2) each
    out1 = x1 * cos - x2 * sin                                        # rotate each pair
    out2 = x1 * sin + x2 * cos
    return array_namespace(x).stack((out1, out2), -1).reshape(x.shape)  # interleave back


def _positions(positions, length: int, shape: tuple) -> np.ndarray:
    """Positions as a float64 numpy array broadcastable to ``shape = (..., L)``."""
    if positions is None:
        return np.arange(length, dtype=np.float64)
    if isinstance(positions, torch.Tensor):
        positions = positions.detach().cpu().numpy()
    pos = as_float_array(positions, "positions").astype(np.float64)
    try:
        fits = np.broadcast_shapes(pos.shape, shape) == shape
    except ValueError:
        fits = False
    if not fits or pos.ndim == 0:
        raise ValueError(f"positions of shape {pos.shape} cannot broadcast to the token "
                         f"shape (..., L) = {shape} of x")
    if not np.isfinite(pos).all():
        raise ValueError("positions must be finite numbers")
    return pos


def alibi_slopes(n_heads: int) -> np.ndarray:
    """The ALiBi slope ``m_h`` of each head, shape ``(n_heads,)``, float64.

    For ``n`` a power of two the slopes are the geometric sequence
    ``2**(-8 h / n)``, ``h = 1, ..., n`` (for 8 heads: 1/2, 1/4, ..., 1/256).
    Otherwise, following the ALiBi paper, with ``k`` the largest power of two
    below ``n``: the ``k`` slopes for ``k`` heads, then the first ``n - k`` of
    every other slope for ``2k`` heads, ``2**(-4 h / k)`` for ``h = 1, 3, 5, ...``
    (for 12 heads: the 8 slopes above, then 2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5).
    """
    n = check_count(n_heads, "n_heads", 1)
    k = 2 ** int(math.floor(math.log2(n)))
    first = 2.0 ** (-8.0 * np.arange(1, k + 1) / k)
    extra = 2.0 ** (-8.0 * np.arange(1, 2 * (n - k), 2) / (2 * k))
    return np.concatenate([first, extra])


def alibi_bias(n_heads: int, n_q: int, n_k: int | None = None) -> np.ndarray:
    """ALiBi score bias ``bias[h, i, j] = -m_h * |i - j|``, shape ``(n_heads, n_q, n_k)``.

    Add it to the scores ``q @ k^T * scale`` of shape ``(B, n_heads, n_q, n_k)``
    before the softmax. Query ``i`` and key ``j`` sit at positions ``i`` and
    ``j`` (aligned top-left, like ``causal_mask``). With a causal mask only
    ``j <= i`` counts, where this is the paper's ``-m_h * (i - j)``; the absolute
    value makes the same bias usable without a causal mask. ``n_k`` defaults to
    ``n_q``. Returns a float64 numpy array.
    """
    slopes = alibi_slopes(n_heads)
    n_q = check_count(n_q, "n_q", 0)
    n_k = n_q if n_k is None else check_count(n_k, "n_k", 0)
    distance = np.abs(np.arange(n_q)[:, None] - np.arange(n_k)[None, :])   # (n_q, n_k)
    return -slopes[:, None, None] * distance
