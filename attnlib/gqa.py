"""Grouped-query attention: groups of query heads share one key/value head.

Reference semantics, for ``H`` query heads and ``H_kv`` key/value heads with
``G = H / H_kv`` query heads per group::

    k_h = k[h // G],  v_h = v[h // G]                    # query head h reads key/value head h // G
    out[h] = scaled_dot_product_attention(q[h], k_h, v_h)

``H_kv = H`` is multi-head attention, ``H_kv = 1`` is multi-query attention.
Only the ``H_kv`` key/value heads are stored (in a KV cache, say), so the cache
shrinks by the factor ``G``. Neither path copies the shared heads: torch's kernel
(``enable_gqa=True``) reads each one for its whole group, and the plain path folds
the ``G`` query heads of a group into one dimension and lets the keys and values
broadcast over it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._common import (as_float_array, as_mask, as_qkv, check_features, check_flag,
                      default_scale)
from .attention import scaled_dot_product_attention


def grouped_query_attention(q, k, v, *, mask=None, causal=False, scale=None):
    """Attention of ``H`` query heads over ``H_kv`` shared key/value heads.

    Args:
        q: queries, shape ``(B, H, Lq, d)``.
        k: keys, shape ``(B, H_kv, Lk, d)``, with ``H % H_kv == 0``.
        v: values, shape ``(B, H_kv, Lk, dv)``. All three numpy arrays or all
            torch tensors.
        mask: optional boolean array broadcastable to ``(B, H, Lq, Lk)``;
            True = may attend.
        causal: if True, query ``i`` attends only keys ``j <= i`` (top-left aligned).
        scale: factor applied to ``q @ k^T``; default ``1 / sqrt(d)``.

    Returns:
        ``(B, H, Lq, dv)``, of the type of ``q``. Query head ``h`` attends with key/value
        head ``h // (H / H_kv)``, like torch's ``scaled_dot_product_attention(...,
        enable_gqa=True)``, which is the fast path for torch tensors without a ``mask``.
    """
    q, k, v = (as_float_array(a, n) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    for a, name, dims in ((q, "q", "(B, H, Lq, d)"), (k, "k", "(B, H_kv, Lk, d)"),
                          (v, "v", "(B, H_kv, Lk, dv)")):
        if a.ndim != 4:
            raise ValueError(f"{name} must have shape {dims}, got shape {tuple(a.shape)}")
    b, h, lq, d = q.shape
    h_kv, lk = k.shape[1], k.shape[2]
    if v.shape[1] != h_kv:
        raise ValueError(f"k of shape {tuple(k.shape)} and v of shape {tuple(v.shape)} must "
                         f"have the same number of key/value heads H_kv: {h_kv} != {v.shape[1]}")
    if h_kv == 0 or h % h_kv:
        raise ValueError(f"the {h} query heads of q {tuple(q.shape)} cannot be split into groups "
                         f"over the {h_kv} key/value heads of k {tuple(k.shape)}: H % H_kv must be 0")
    causal = check_flag(causal, "causal")
    check_features(q)
    g = h // h_kv
    qg = q.reshape(b, h_kv, g, lq, d)                         # (B, H_kv, G, Lq, d): a group per kv head
    kg, vg = k[:, :, None], v[:, :, None]                     # (B, H_kv, 1, Lk, d): shared, not copied
    qg, kg, vg, _ = as_qkv(qg, kg, vg)                        # one backend, one dtype, matching sizes
    if isinstance(q, torch.Tensor) and mask is None and lk > 0:
        # fast path: torch's fused kernel reads each key/value head for its whole group
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True,
                                              scale=default_scale(scale, d))
    # plain path: the groups folded into a dimension of their own, keys and values broadcast
    if mask is not None:
        mask = as_mask(mask, q, shape=(b, h, lq, lk))
        mask = _full(mask, (b, h, lq, lk)).reshape(b, h_kv, g, lq, lk)
    out = scaled_dot_product_attention(qg, kg, vg, mask=mask, causal=causal, scale=scale)
    return out.reshape(b, h, lq, out.shape[-1])               # (B, H, Lq, dv)


def _full(mask, shape):
    """``mask`` broadcast to ``shape`` (numpy or torch)."""
    return mask.expand(*shape) if isinstance(mask, torch.Tensor) else np.broadcast_to(mask, shape)
