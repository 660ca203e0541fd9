"""The Sparse Transformer's factorized patterns: strided and fixed attention.

Reference semantics (dense, quadratic)::

    strided_attention(q, k, v, stride=l) == scaled_dot_product_attention(q, k, v, mask=strided_mask(n, l))
    fixed_attention(q, k, v, stride=l)   == scaled_dot_product_attention(q, k, v, mask=fixed_mask(n, l))

Each query's keys fall into two *disjoint* sets that have a regular shape, so
neither path builds the ``(n, n)`` matrix:

- strided: the band ``|i - j| <= l`` (blocked, as in ``attnlib.local``) and the
  column ``i - j = m l`` with ``|m| >= 2``, which is attention down the columns of
  the sequence laid out as an ``(n / l, l)`` grid. The two softmaxes are combined
  exactly through their log-sum-exps (:func:`merge_partial`).
- fixed: the query's own block of ``l`` positions plus the ``c n / l`` summary
  keys, concatenated into one key set per block.

With ``l`` near ``sqrt(n)`` both cost ``O(n sqrt(n))``.
"""

from __future__ import annotations

import numpy as np
import torch

from ._common import (append_keys, array_namespace, blocks, ceil_div, check_count, check_flag,
                      pad_seq, row_max, self_attention_inputs, zero_if_empty)
from .flex import check_backend, flex_masked_attention
from .local import band_blocks, blocked_attention


def strided_attention(q, k, v, *, stride, causal=True, scale=None, block_size=None,
                      backend="plain"):
    """Strided Sparse Transformer attention: a window of ``stride`` plus every ``stride``-th key.

    Query ``i`` attends key ``j`` iff ``|i - j| <= stride`` or ``i - j`` is a
    multiple of ``stride``; with ``causal=True`` (the default) only ``j <= i``.
    Equal to :func:`attnlib.scaled_dot_product_attention` with
    ``mask=strided_mask(n, stride, causal=causal)``.

    Args:
        q, k, v: shapes ``(..., n, d)``, ``(..., n, d)``, ``(..., n, dv)``.
        stride: the period ``l``, an int >= 1.
        causal: attend only to keys at or before the query.
        scale: factor applied to the scores; default ``1 / sqrt(d)``.
        block_size: queries per block of the band part (default ``stride``); speed only.
        backend: ``"plain"`` (this module's two parts) or ``"flex"`` (a compiled
            ``flex_attention`` kernel, torch only: see ``attnlib.flex``).

    Returns:
        ``out`` of shape ``(..., n, dv)`` and the type of ``q``.
    """
    causal = check_flag(causal, "causal")
    q, k, v, n, scale = self_attention_inputs(q, k, v, scale)
    l = check_count(stride, "stride", 1)
    if check_backend(backend, q) == "flex":
        return flex_masked_attention(q, k, v, "strided", (l, causal), scale=scale)
    block = min(n, l if block_size is None else check_count(block_size, "block_size", 1))
    # part 1, the band |i - j| <= l, in blocks
    qb, kb, vb, keep = band_blocks(q, k, v, window=l, causal=causal, block=block)
    band = attention_with_lse(qb, kb, vb, keep, scale)                 # (..., nb, b, .)
    band = tuple(x.reshape(*x.shape[:-3], -1, x.shape[-1])[..., :n, :] for x in band)
    # part 2, i - j = m l with |m| >= 2: down the columns of the (M, l) grid
    m = ceil_div(n, l)
    qc, kc, vc = (blocks(pad_seq(x, 0, m * l - n), l).swapaxes(-2, -3)
                  for x in (q, k, v))                                 # (..., l, M, d)
    t = np.arange(m)
    gap = t[:, None] - t[None, :]                                      # (M, M): t - t'
    real = (t[None, :] * l + np.arange(l)[:, None] < n)                # (l, M): key inside?
    keep = ((gap >= 2) if causal else (np.abs(gap) >= 2)) & real[:, None, :]   # (l, M, M)
    column = attention_with_lse(qc, kc, vc, keep, scale)
    column = tuple(x.swapaxes(-2, -3).reshape(*x.shape[:-3], m * l, x.shape[-1])[..., :n, :]
                   for x in column)
    return merge_partial(band, column)


def fixed_attention(q, k, v, *, stride, summary=1, causal=True, scale=None):
    """Fixed Sparse Transformer attention: the query's own block plus the summary positions.

    Blocks hold ``stride`` positions. Query ``i`` attends key ``j`` iff ``j`` is in
    the block of ``i``, or ``j`` is one of the last ``summary`` positions of its
    block; with ``causal=True`` (the default) only ``j <= i``. Equal to
    :func:`attnlib.scaled_dot_product_attention` with
    ``mask=fixed_mask(n, stride, summary=summary, causal=causal)``.

    Args:
        q, k, v: shapes ``(..., n, d)``, ``(..., n, d)``, ``(..., n, dv)``.
        stride: the block length ``l``, an int >= 1.
        summary: summary positions per block ``c``, an int in ``[1, stride]``.
        causal: attend only to keys at or before the query.
        scale: factor applied to the scores; default ``1 / sqrt(d)``.

    Returns:
        ``out`` of shape ``(..., n, dv)`` and the type of ``q``.
    """
    causal = check_flag(causal, "causal")
    q, k, v, n, scale = self_attention_inputs(q, k, v, scale)
    l = check_count(stride, "stride", 1)
    c = check_count(summary, "summary", 1)
    if c > l:
        raise ValueError(f"summary must be <= stride={l}, got {c}")
    m = ceil_div(n, l)
    qb, kb, vb = (blocks(pad_seq(x, 0, m * l - n), l) for x in (q, k, v))   # (..., M, l, .)
    pos = np.arange(m * l).reshape(m, l)                             # position of (block, slot)
    a = np.arange(l)
    own = (a[None, :] <= a[:, None]) if causal else np.ones((l, l), dtype=bool)
    own = own & (pos < n)[:, None, :]                                # (M, l, l)
    # summary keys: the last c slots of every block, shared by all query blocks
    ks, vs = (x[..., l - c:, :].reshape(*x.shape[:-3], m * c, x.shape[-1]) for x in (kb, vb))
    s_block = np.repeat(np.arange(m), c)                             # (M c,) block of each
    s_ok = pos[:, l - c:].reshape(-1) < n
    other = (s_block[None, :] < np.arange(m)[:, None]) if causal \
        else (s_block[None, :] != np.arange(m)[:, None])             # (M, M c)
    keep = np.concatenate([own, np.broadcast_to((other & s_ok)[:, None, :], (m, l, m * c))], -1)
    kb, vb = append_keys(kb, ks), append_keys(vb, vs)              # (..., M, l + M c, .)
    out = blocked_attention(qb, kb, vb, keep, scale)                # (..., M, l, dv)
    return out.reshape(*out.shape[:-3], m * l, out.shape[-1])[..., :n, :]


def attention_with_lse(q, k, v, keep, scale):
    """Masked attention and its log-sum-exp, for combining attention over disjoint key sets.

    Shapes: ``q (..., Lq, d)``, ``k (..., Lk, d)``, ``v (..., Lk, dv)``, ``keep``
    a numpy bool array broadcastable to ``(..., Lq, Lk)``. Returns
    ``(out, lse)`` with ``out (..., Lq, dv)`` the attention output and
    ``lse (..., Lq, 1)`` the log of the row's sum of ``exp(score)`` over kept keys;
    a row with no kept key has ``out = 0`` and ``lse = -inf``.
    """
    xp = array_namespace(q)
    s = (q @ k.swapaxes(-1, -2)) * scale                               # (..., Lq, Lk)
    if isinstance(s, torch.Tensor):
        keep = torch.as_tensor(keep, device=s.device)
    s = xp.where(keep, s, -xp.inf)
    mx = row_max(s)                                                    # 0 for a row with no key
    p = xp.exp(s - mx)
    total = p.sum(-1, keepdims=True)
    some = total > 0
    safe = xp.where(some, total, 1.0)
    return (p @ v) / safe, xp.where(some, mx + xp.log(safe), -xp.inf)


def merge_partial(*parts):
    """Combine ``(out, lse)`` pairs computed over disjoint key sets into one attention output.

    With ``w_i = exp(lse_i - max_i lse_i)``, the result is
    ``sum_i w_i out_i / sum_i w_i``: exactly the softmax over the union of the key
    sets. Shapes ``out (..., L, dv)``, ``lse (..., L, 1)``; rows empty in every
    part give zeros.
    """
    xp = array_namespace(parts[0][0])
    lses = [lse for _, lse in parts]
    mx = lses[0]
    for lse in lses[1:]:
        mx = xp.maximum(mx, lse)
    mx = zero_if_empty(mx)
    weights = [xp.exp(lse - mx) for lse in lses]
    total = sum(weights)
    out = sum(w * o for w, (o, _) in zip(weights, parts))
    return out / xp.where(total > 0, total, 1.0)
