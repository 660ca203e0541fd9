"""Kernelized linear attention (Katharopoulos et al., 2020) with the feature map elu(x) + 1.

Reference semantics (quadratic; an approximation of softmax attention, not equal to it)::

    phi(x)  = elu(x) + 1                      # > 0 everywhere
    A[i, j] = phi(q_i) . phi(k_j)             # (..., Lq, Lk), j <= i if causal; no 1/sqrt(d)
    out_i   = sum_j A[i, j] v_j / sum_j A[i, j]

The fast path reorders the products: ``phi(q) (phi(k)^T v)`` costs ``O(n d dv)``
instead of ``O(n^2 d)``. Causal attention needs, for every ``i``, the prefix sums
``S_i = sum_{j<=i} phi(k_j) v_j^T`` (a ``d x dv`` matrix each); storing all of them
would take ``O(n d dv)`` memory. The chunked form stores one state per chunk of
``C`` positions and handles the positions inside a chunk with a small ``C x C``
masked product, which takes ``O(n d dv / C + n C)``.
"""

from __future__ import annotations

from ._common import (array_namespace, as_float_array, as_qkv, blocks, ceil_div, check_count,
                      check_flag, concat, pad_seq, self_attention_length)


def elu_feature_map(x):
    """``phi(x) = elu(x) + 1``, elementwise: ``x + 1`` for ``x > 0``, ``exp(x)`` otherwise.

    Accepts a numpy array or torch tensor of any shape ``(...)`` and returns the
    same type and shape; every entry is > 0 (for finite ``x`` not below about -700
    in float64).
    """
    x = as_float_array(x, "x")
    # exp(x) directly rather than (exp(x) - 1) + 1, which loses the digits of small values
    xp = array_namespace(x)
    return xp.where(x > 0, x + 1.0, xp.exp(x.clip(max=0.0)))


def linear_attention(q, k, v, *, causal=False, chunk_size=64):
    """Linear attention with ``phi = elu + 1``: ``phi(q) (phi(k)^T v)``, normalised per query.

    Output ``out_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j)`` over all
    keys ``j``, or over ``j <= i`` with ``causal=True``. There is no ``1 / sqrt(d)``
    scaling and no softmax: this approximates softmax attention, it does not
    equal it.

    Args:
        q: queries, shape ``(..., Lq, d)``.
        k: keys, shape ``(..., Lk, d)`` (``Lk == Lq`` if causal).
        v: values, shape ``(..., Lk, dv)``. All numpy arrays or all torch tensors.
        causal: query ``i`` attends only keys ``j <= i``.
        chunk_size: positions per chunk of the causal form, an int >= 1; it
            changes the memory and speed, not the result.

    Returns:
        ``out`` of shape ``(..., Lq, dv)`` and the type of ``q``.
    """
    causal = check_flag(causal, "causal")
    q, k, v, _ = as_qkv(q, k, v)
    chunk = check_count(chunk_size, "chunk_size", 1)
    fq, fk = elu_feature_map(q), elu_feature_map(k)
    if not causal:
        state = fk.swapaxes(-1, -2) @ v                         # (..., d, dv)
        norm = fk.sum(-2)[..., :, None]                         # (..., d, 1)
        return (fq @ state) / (fq @ norm)                       # (..., Lq, dv)
    n = self_attention_length(q, k)
    return _causal_chunked(fq, fk, v, min(chunk, n))


def _causal_chunked(fq, fk, v, chunk):
    """Causal linear attention on features ``fq (..., n, d)``, ``fk (..., n, d)``, ``v (..., n, dv)``.

    Chunk ``c`` covers positions ``c C .. c C + C - 1``. A query sees (1) the
    state of all earlier chunks, an exclusive prefix sum of the per-chunk sums
    ``phi(k)^T v``, and (2) the keys of its own chunk up to itself.
    """
    n = fq.shape[-2]
    nc = ceil_div(n, chunk)
    pad = nc * chunk - n          # padded keys have phi = 0, so they add nothing
    xp = array_namespace(fq)
    fq, fk, v = (blocks(pad_seq(x, 0, pad), chunk) for x in (fq, fk, v))   # (..., nc, C, .)
    # (1) earlier chunks: exclusive prefix sums of the chunk states
    state = fk.swapaxes(-1, -2) @ v                              # (..., nc, d, dv)
    norm = fk.sum(-2)[..., :, None]                              # (..., nc, d, 1)
    state, norm = (_exclusive_cumsum(x) for x in (state, norm))
    num = fq @ state                                             # (..., nc, C, dv)
    den = fq @ norm                                              # (..., nc, C, 1)
    # (2) own chunk: a masked C x C product
    a = fq @ fk.swapaxes(-1, -2)                                 # (..., nc, C, C)
    a = a * xp.tril(xp.ones_like(a.reshape(-1, chunk, chunk)[0]))  # (C, C): keys j <= query i
    num = num + a @ v
    den = den + a.sum(-1)[..., None]
    num, den = (x.reshape(*x.shape[:-3], nc * chunk, x.shape[-1])[..., :n, :] for x in (num, den))
    return num / den                                             # padded queries dropped first


def _exclusive_cumsum(x):
    """Sum of the earlier entries along axis -3 (0 for the first): ``(..., nc, a, b)``."""
    xp = array_namespace(x)
    total = xp.cumsum(x, -3)
    return concat([xp.zeros_like(total[..., :1, :, :]), total[..., :-1, :, :]], -3)
