"""Local attention: a sliding window, dilated windows, and Longformer's window plus global tokens.

Reference semantics (dense, quadratic; the tests hold the fast code to it)::

    sliding_window_attention(q, k, v, window=w)
        == scaled_dot_product_attention(q, k, v, mask=local_mask(n, w))
    longformer_attention(q, k, v, window=w, global_tokens=g)
        == scaled_dot_product_attention(q, k, v, mask=longformer_mask(n, w, g))

The fast path never builds the ``(n, n)`` score matrix. It cuts the queries into
blocks of ``b`` positions; block ``I`` needs only the keys from ``I*b - w`` to
``I*b + b - 1 + w``, a window of ``b + 2w`` keys that overlaps its neighbours'.
Those windows are strided *views* of the (padded) keys, so gathering them copies
nothing, and attention runs on ``(n / b)`` small ``(b, b + 2w)`` score blocks with a
band mask: ``O(n (b + 2w))`` time and memory instead of ``O(n^2)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ._common import (append_keys, blocks, ceil_div, check_count, check_flag, concat, pad_seq,
                      self_attention_inputs)
from .attention import scaled_dot_product_attention
from .flex import check_backend, flex_masked_attention
from .sparse_masks import global_token_index


def sliding_window_attention(q, k, v, *, window, causal=False, scale=None, dilation=1,
                             block_size=None, backend="plain"):
    """Attention in which query ``i`` sees only the keys within ``window`` positions.

    Query ``i`` attends key ``j`` iff ``|i - j| <= window``; with ``causal=True``
    iff ``i - window <= j <= i``. With ``dilation=D`` it attends the keys
    ``j = i + m D`` with ``|m| <= window`` (``-window <= m <= 0`` if causal).
    Equal to :func:`attnlib.scaled_dot_product_attention` with
    ``mask=local_mask(n, window, causal=causal, dilation=dilation)``, at a cost
    linear in ``n``: the ``(n, n)`` matrix is never built.

    Args:
        q: queries, shape ``(..., n, d)``.
        k: keys, shape ``(..., n, d)`` (as many keys as queries).
        v: values, shape ``(..., n, dv)``. All numpy arrays or all torch tensors.
        window: how far a query reaches on each side, an int >= 0.
        causal: attend only to keys at or before the query.
        scale: factor applied to the scores; default ``1 / sqrt(d)``.
        dilation: gap between attended keys, an int >= 1.
        block_size: queries per block (default: ``window // 4`` clipped to ``[16, 64]``).
            It changes the speed, never the result.
        backend: ``"plain"`` (this module's blocked code) or ``"flex"`` (a compiled
            ``flex_attention`` kernel, torch only: see ``attnlib.flex``).

    Returns:
        ``out`` of shape ``(..., n, dv)`` and the type of ``q``.
    """
    causal = check_flag(causal, "causal")
    q, k, v, n, scale = self_attention_inputs(q, k, v, scale)
    window = check_count(window, "window", 0)
    dilation = check_count(dilation, "dilation", 1)
    if check_backend(backend, q) == "flex":
        return flex_masked_attention(q, k, v, "window", (window, causal, dilation), scale=scale)
    if dilation == 1:
        return _banded(q, k, v, window=window, causal=causal, scale=scale,
                       block=_block(block_size, window, n))
    # positions p = t * D + r: each residue class r is a plain sliding window over t
    m = ceil_div(n, dilation)
    qd, kd, vd = (blocks(pad_seq(x, 0, m * dilation - n), dilation).swapaxes(-2, -3)
                  for x in (q, k, v))                                   # (..., D, m, d)
    key_ok = (np.arange(m * dilation).reshape(m, dilation) < n).T     # (D, m): real positions
    out = _banded(qd, kd, vd, window=window, causal=causal, scale=scale,
                  block=_block(block_size, window, m), key_ok=key_ok, query_ok=key_ok)
    out = out.swapaxes(-2, -3)
    return out.reshape(*out.shape[:-3], m * dilation, out.shape[-1])[..., :n, :]


def longformer_attention(q, k, v, *, window, global_tokens, scale=None, block_size=None,
                         backend="plain"):
    """Longformer attention: a sliding window plus global tokens.

    Query ``i`` attends key ``j`` iff ``|i - j| <= window``, or ``i`` is a global
    token (it attends to every key), or ``j`` is a global token (every query
    attends to it). Equal to :func:`attnlib.scaled_dot_product_attention` with
    ``mask=longformer_mask(n, window, global_tokens)``; the cost is
    ``O(n (window + g))`` for ``g`` global tokens.

    Args:
        q, k, v: shapes ``(..., n, d)``, ``(..., n, d)``, ``(..., n, dv)``.
        window: how far a query reaches on each side, an int >= 0.
        global_tokens: positions of the global tokens, a sequence of ints in
            ``[0, n)`` or a boolean array of shape ``(n,)``.
        scale: factor applied to the scores; default ``1 / sqrt(d)``.
        block_size: queries per block of the window part; speed only.
        backend: ``"plain"`` or ``"flex"`` (see :func:`sliding_window_attention`).

    Returns:
        ``out`` of shape ``(..., n, dv)`` and the type of ``q``.
    """
    q, k, v, n, scale = self_attention_inputs(q, k, v, scale)
    window = check_count(window, "window", 0)
    g = global_token_index(global_tokens, n)                         # (g,)
    if check_backend(backend, q) == "flex":
        return flex_masked_attention(q, k, v, "longformer", (window, tuple(g.tolist()), n),
                                     scale=scale)
    if g.size == 0:
        return _banded(q, k, v, window=window, causal=False, scale=scale,
                       block=_block(block_size, window, n))
    key_ok = np.ones(n, dtype=bool)
    key_ok[g] = False          # global keys join every window once, as extra keys
    idx = torch.as_tensor(g, device=q.device) if isinstance(q, torch.Tensor) else g
    out = _banded(q, k, v, window=window, causal=False, scale=scale,
                  block=_block(block_size, window, n), key_ok=key_ok,
                  extra=(k[..., idx, :], v[..., idx, :]))
    # the rows of global tokens attend to everything: g dense rows, O(g n)
    rows = scaled_dot_product_attention(q[..., idx, :], k, v, scale=scale)  # (..., g, dv)
    if isinstance(out, torch.Tensor):
        return out.index_copy(out.ndim - 2, idx, rows)
    out[..., idx, :] = rows
    return out


def _block(block_size, window: int, n: int) -> int:
    """Queries per block: the given ``block_size``, else ``window // 4`` clipped to ``[16, 64]``; at most ``n``.

    A block of ``b`` queries reads ``b + 2 window`` keys, so small blocks waste
    little on keys outside the band, while blocks below 16 cost more in overhead.
    """
    if block_size is None:
        return min(n, max(16, min(window // 4, 64)))
    return min(n, check_count(block_size, "block_size", 1))


def _windows(x, size: int, step: int):
    """Overlapping windows along axis -2, as a view: ``(..., P, d)`` -> ``(..., (P - size) // step + 1, size, d)``."""
    if isinstance(x, torch.Tensor):
        return x.unfold(-2, size, step).transpose(-1, -2)
    view = np.lib.stride_tricks.sliding_window_view(x, size, axis=-2)   # (..., P - size + 1, d, size)
    return view[..., ::step, :, :].swapaxes(-1, -2)


def band_blocks(q, k, v, *, window, causal, block, key_ok=None, query_ok=None):
    """Cut banded attention into blocks; return ``(qb, kb, vb, keep)``.

    Query block ``I`` (positions ``I*b .. I*b + b - 1``) gets the window of keys
    from ``I*b - window`` to ``I*b + b - 1 + window`` (``I*b + b - 1`` if causal):

    - ``qb`` of shape ``(..., nb, b, d)``, with ``nb = ceil(n / b)``, zero-padded;
    - ``kb``, ``vb`` of shapes ``(..., nb, size, d)`` and ``(..., nb, size, dv)``,
      strided views with ``size = b + 2 window`` (``b + window`` if causal);
    - ``keep``, a numpy bool array of shape ``(..., nb, b, size)``: the band
      ``|i - j| <= window`` (causal: ``0 <= i - j <= window``), restricted to keys
      inside the sequence and, if given, to keys with ``key_ok`` (shape ``(..., n)``) True.
      The rows of padding queries (past ``n``, or with ``query_ok`` False) keep
      their whole window, so that no row is empty; their output is to be dropped.
    """
    n = q.shape[-2]
    nb = ceil_div(n, block)
    span = window if causal else 2 * window               # keys of query a: c = a .. a + span
    size = block + span
    right = nb * block - n + span - window
    qb = blocks(pad_seq(q, 0, nb * block - n), block)                         # (..., nb, b, d)
    kb, vb = (_windows(pad_seq(x, window, right), size, block) for x in (k, v))  # (..., nb, size, d)
    ok = np.ones(n, dtype=bool) if key_ok is None else key_ok                 # (..., n)
    ok = np.pad(ok, [(0, 0)] * (ok.ndim - 1) + [(window, right)])             # False outside
    ok = np.lib.stride_tricks.sliding_window_view(ok, size, axis=-1)[..., ::block, :]  # (..., nb, size)
    a = np.arange(block)[:, None]
    c = np.arange(size)[None, :]
    band = (c >= a) & (c <= a + span)                                         # (b, size)
    real = np.ones(n, dtype=bool) if query_ok is None else query_ok           # (..., n)
    real = np.pad(real, [(0, 0)] * (real.ndim - 1) + [(0, nb * block - n)])
    real = real.reshape(*real.shape[:-1], nb, block, 1)                       # (..., nb, b, 1)
    return qb, kb, vb, (band & ok[..., None, :]) | ~real


def _banded(q, k, v, *, window, causal, scale, block, key_ok=None, query_ok=None, extra=None):
    """Blocked banded attention (see :func:`band_blocks`), ``(..., n, d)`` -> ``(..., n, dv)``.

    ``extra = (ke, ve)`` of shapes ``(..., g, d)``, ``(..., g, dv)`` adds ``g`` keys
    that every query attends to, concatenated to every block's window.

    A plain window (no ``key_ok``, ``query_ok`` or ``extra``) takes a faster route:
    the blocks whose key window lies inside the sequence share one ``(b, size)``
    band mask and read their keys as views of ``k`` and ``v`` (nothing is padded or
    copied); only the few blocks at either end go through :func:`band_blocks`.
    """
    n = q.shape[-2]
    span = window if causal else 2 * window
    size = block + span
    lo = ceil_div(window, block)                     # first block whose window starts at key >= 0
    hi = (n + window - size) // block            # last block whose window ends at key <= n
    if key_ok is None and query_ok is None and extra is None and hi >= lo:
        start, stop = lo * block, (hi + 1) * block           # interior queries: start .. stop-1
        qi = blocks(q[..., start:stop, :], block)                             # (..., m, b, d)
        ki, vi = (_windows(x[..., start - window:, :], size, block)[..., : hi + 1 - lo, :, :]
                  for x in (k, v))                                            # (..., m, size, d)
        a = np.arange(block)[:, None]
        c = np.arange(size)[None, :]
        band = ((c >= a) & (c <= a + span))[None]                             # (1, b, size)
        mid = blocked_attention(qi, ki, vi, band, scale)
        parts = [mid.reshape(*mid.shape[:-3], stop - start, mid.shape[-1])]
        if start > 0:      # queries before `start` reach keys before start + window only
            end = min(n, start + window)
            parts.insert(0, _banded(q[..., :end, :], k[..., :end, :], v[..., :end, :],
                                    window=window, causal=causal, scale=scale,
                                    block=block, query_ok=np.arange(end) < start)[..., :start, :])
        if stop < n:       # queries from `stop` on reach keys from stop - window on
            first = max(0, stop - window)
            parts.append(_banded(q[..., first:, :], k[..., first:, :], v[..., first:, :],
                                 window=window, causal=causal, scale=scale, block=block,
                                 query_ok=np.arange(first, n) >= stop)[..., stop - first:, :])
        return parts[0] if len(parts) == 1 else concat(parts, -2)
    qb, kb, vb, keep = band_blocks(q, k, v, window=window, causal=causal, block=block,
                                   key_ok=key_ok, query_ok=query_ok)
    if extra is not None:
        kb, vb = (append_keys(xb, xe) for xb, xe in zip((kb, vb), extra))
        keep = np.concatenate([keep, np.ones((*keep.shape[:-1], extra[0].shape[-2]), bool)], -1)
    out = blocked_attention(qb, kb, vb, keep, scale)                         # (..., nb, b, dv)
    return out.reshape(*out.shape[:-3], -1, out.shape[-1])[..., :n, :]


def blocked_attention(qb, kb, vb, keep, scale):
    """Masked attention inside each block: ``(..., nb, b, d)`` queries over ``(..., nb, s, d)`` keys.

    ``keep`` is a numpy bool array of shape ``(*lead, nb, b or 1, s)`` whose
    leading dims ``lead`` match the last batch dims of the blocks. Rows with no
    kept key give zeros. Returns ``(..., nb, b, dv)``.

    Numpy goes through :func:`attnlib.scaled_dot_product_attention`. Torch calls
    torch's fused kernel directly, with the batch dims flattened so that the
    inputs and the mask are 4-D: the fused CPU kernel is used only then (for
    other shapes torch falls back to materialising the scores in several passes).
    """
    if not isinstance(qb, torch.Tensor):
        return scaled_dot_product_attention(qb, kb, vb, mask=keep, scale=scale)
    batch = np.broadcast_shapes(qb.shape[:-3], kb.shape[:-3], vb.shape[:-3])
    lead = keep.ndim - 3
    inner = batch[len(batch) - lead:]                    # batch dims the mask varies over
    nb, b = qb.shape[-3], qb.shape[-2]
    q4, k4, v4 = (x.expand(*batch, *x.shape[-3:]).reshape(-1, math.prod(inner) * nb, *x.shape[-2:])
                  for x in (qb, kb, vb))
    keep = np.broadcast_to(keep, (*inner, *keep.shape[-3:])).reshape(1, -1, *keep.shape[-2:])
    has_any = keep.any(axis=-1, keepdims=True)           # rows with a key to attend to
    # an additive mask (0 or -inf) is what the kernel adds to the scores; passing it
    # as such saves the kernel a conversion. Empty rows attend to everything here
    # (torch would give NaN) and are set to zero below.
    bias = np.where(keep | ~has_any, 0.0, -np.inf)
    bias = torch.as_tensor(bias, dtype=qb.dtype, device=qb.device)
    out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=bias, scale=scale)
    if not has_any.all():
        out = torch.where(torch.as_tensor(has_any, device=out.device), out, 0.0)
    return out.reshape(*batch, nb, b, out.shape[-1])
