"""Scaled dot-product attention, for numpy arrays and torch tensors.

Reference semantics (the plain path, written out below)::

    scores  = q @ k^T * scale                       # (..., Lq, Lk), scale = 1/sqrt(d)
    weights = softmax(scores, axis=-1, mask=keep)   # keep = mask & causal
    out     = weights @ v                           # (..., Lq, dv)

Every query ``i`` is scored against every key ``j``: the score matrix holds all
``Lq * Lk`` pairs, not only ``i == j``. A query row whose keys are all masked
gets zero weights and a zero output, never NaN. The torch fast path calls
``torch.nn.functional.scaled_dot_product_attention`` and gives the same result.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._common import as_mask, as_qkv, broadcast_to, check_flag, default_scale
from .masks import causal_mask
from .softmax import softmax


def scaled_dot_product_attention(q, k, v, *, mask=None, causal=False, scale=None,
                                 return_weights=False):
    """Attention of queries ``q`` over keys ``k`` and values ``v``.

    Args:
        q: queries, shape ``(..., Lq, d)``.
        k: keys, shape ``(..., Lk, d)``.
        v: values, shape ``(..., Lk, dv)``. The leading dimensions of q, k and v
            broadcast together into the batch shape ``(...)``. All three are numpy
            arrays or all torch tensors.
        mask: optional boolean array broadcastable to ``(..., Lq, Lk)``;
            True = the query may attend to the key.
        causal: if True, query ``i`` attends only keys ``j <= i`` (aligned top-left,
            like torch's ``is_causal``); combined with ``mask`` by logical and.
        scale: factor applied to ``q @ k^T``; default ``1 / sqrt(d)``.
        return_weights: also return the attention weights.

    Returns:
        ``out`` of shape ``(..., Lq, dv)`` and the type of ``q``, or
        ``(out, weights)`` with ``weights`` of shape ``(..., Lq, Lk)``.
        A query with no key to attend to (fully masked, or ``Lk == 0``) gets
        zero weights and a zero output.
    """
    q, k, v, batch = as_qkv(q, k, v)
    causal = check_flag(causal, "causal")
    return_weights = check_flag(return_weights, "return_weights")
    (lq, d), lk = q.shape[-2:], k.shape[-2]
    scale = default_scale(scale, d)
    keep = None
    if mask is not None:
        keep = as_mask(mask, q, shape=(*batch, lq, lk))
    if causal:
        tri = as_mask(causal_mask(lq, lk), q, shape=(lq, lk))
        keep = tri if keep is None else keep & tri

    if isinstance(q, torch.Tensor) and not return_weights and lk > 0:
        return _sdpa_torch(q, k, v, keep, scale, is_causal=causal and mask is None)

    # plain path: the reference semantics, step by step
    scores = (q @ k.swapaxes(-1, -2)) * scale          # (..., Lq, Lk): every pair (i, j)
    scores = broadcast_to(scores, (*batch, lq, lk))    # v's batch dims may add to q's and k's
    if lk == 0:                                        # no key at all: zero weights, zero output
        weights = scores
    else:
        weights = softmax(scores, axis=-1, mask=keep)  # zeros on fully masked rows
    out = weights @ v                                  # (..., Lq, dv)
    return (out, weights) if return_weights else out


def attention_weights(q, k, *, mask=None, causal=False, scale=None):
    """The weights of :func:`scaled_dot_product_attention` alone, for a caller that
    transforms them before the product with the values (dropout, say).

    Shapes: ``q (..., Lq, d)``, ``k (..., Lk, d)``; returns ``(..., Lq, Lk)``, the
    type of ``q``. The values passed on have no features (``k[..., :0]``), so the
    product with them costs nothing.
    """
    _, weights = scaled_dot_product_attention(q, k, k[..., :0], mask=mask, causal=causal,
                                              scale=scale, return_weights=True)
    return weights


def _sdpa_torch(q, k, v, keep, scale, is_causal):
    """Fast path: torch's fused kernel, with fully masked rows set to zero.

    Older torch releases return NaN for a query with no key to attend to, and
    some kernels give NaN gradients there. Such rows are given an all-True mask
    (so neither values nor gradients become NaN) and their output is then
    replaced by zeros.
    """
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    q, k, v = (t.expand(*batch, *t.shape[-2:]) for t in (q, k, v))
    if is_causal:  # top-left causal: every query sees key 0, no empty rows
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    if keep is None:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    keep = keep.expand(*keep.shape[:-2], *q.shape[-2:-1], k.shape[-2])  # (..., Lq, Lk), a view
    has_any = keep.any(dim=-1, keepdim=True)           # (..., Lq, 1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep | ~has_any, scale=scale)
    return torch.where(has_any, out, 0.0)
