"""Exact attention in chunks, without ever holding the ``(Lq, Lk)`` score matrix.

The queries are cut into blocks of ``chunk_size`` rows and the keys into blocks of
``chunk_size`` columns. For one query block the key blocks are visited in order,
and a running softmax is kept per query row (the *online softmax*)::

    s     = (q_blk * scale) @ k_blk^T                 # (..., cq, ck): one tile of scores
    m_new = max(m, rowmax(s))                         # running maximum
    p     = exp(s - m_new)                            # tile weights, not yet normalised
    alpha = exp(m - m_new)                            # rescales what came before
    l     = alpha * l + rowsum(p)                     # running sum of exponentials
    acc   = alpha * acc + p @ v_blk                   # running weighted sum of values
    out   = acc / l                                   # after the last key block

At most one tile of ``chunk_size**2`` scores per batch entry exists at a time, so the
extra memory is ``O(chunk_size**2 + Lq * dv)`` instead of ``O(Lq * Lk)``, and the
result equals ordinary softmax attention up to rounding. With ``causal=True``, key
blocks that lie entirely after a query block are skipped, which halves the work.

Training goes through :class:`ChunkedAttentionFunction`, FlashAttention-2's backward
pass. The forward pass saves only the output ``O`` and the row log-sum-exp
``lse = m + log(l)``; the backward pass visits the same tiles again and recomputes
each tile's weights from them, ``P = exp(s - lse)``, instead of storing them::

    delta = rowsum(dO * O)                            # (..., Lq, 1), once
    P     = exp(s - lse)                              # (..., cq, ck): the tile's weights
    dV   += P^T @ dO                                  # (..., ck, dv)
    dP    = dO @ V^T                                  # (..., cq, ck)
    dS    = P * (dP - delta)                          # the softmax's backward pass
    dQ   += scale * dS @ K                            # (..., cq, d)
    dK   += scale * dS^T @ Q                          # (..., ck, d)

so training needs ``O(chunk_size**2 + Lq * d)`` extra memory too.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._common import (array_namespace, as_mask, as_qkv, check_count, check_flag, default_scale,
                      zero_if_empty)


def chunked_attention(q, k, v, *, chunk_size=1024, causal=False, scale=None, mask=None):
    """Softmax attention computed tile by tile with an online softmax; exact.

    Args:
        q: queries, shape ``(..., Lq, d)``.
        k: keys, shape ``(..., Lk, d)``.
        v: values, shape ``(..., Lk, dv)``. The leading dimensions of q, k and v
            broadcast together into the batch shape ``(...)``. All three are numpy
            arrays or all torch tensors.
        chunk_size: rows of queries and columns of keys per tile (an int >= 1).
            Any ``Lq`` and ``Lk`` work; the last tile is simply smaller.
        causal: if True, query ``i`` attends only keys ``j <= i`` (aligned top-left,
            like torch's ``is_causal``); tiles with no allowed key are skipped.
        scale: factor applied to ``q @ k^T``; default ``1 / sqrt(d)``.
        mask: optional boolean array broadcastable to ``(..., Lq, Lk)``, True = may
            attend; combined with ``causal`` by logical and. Only the tile being
            computed is sliced out of it, so no ``(Lq, Lk)`` array is ever built.

    Returns:
        ``out`` of shape ``(..., Lq, dv)`` and the type and dtype of ``q``: the same
        as :func:`attnlib.scaled_dot_product_attention`. A query row with no key to
        attend to gives zeros.

    Torch tensors take a fast path (in-place updates of each tile, no autograd
    graph). When gradients are being recorded for an input, the same fast path runs
    inside ``ChunkedAttentionFunction``, whose backward pass recomputes the
    tiles instead of storing them. Numpy arrays take the plain path, the online
    softmax written out; both compute the same thing. The fast path may cut a query
    block into thinner slices of rows, so that one tile of scores over the whole
    batch stays small enough for the processor's cache.
    """
    causal = check_flag(causal, "causal")
    q, k, v, batch = as_qkv(q, k, v)
    size = check_count(chunk_size, "chunk_size", 1)
    scale = default_scale(scale, q.shape[-1])
    lq, lk = q.shape[-2], k.shape[-2]
    keep = None
    if mask is not None:
        keep = as_mask(mask, q, shape=(*batch, lq, lk))
        keep = keep.reshape((1,) * (2 - keep.ndim) + tuple(keep.shape))  # at least 2-D
    if not isinstance(q, torch.Tensor):
        return _chunked_plain(q, k, v, keep, causal, scale, size, batch)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        # the batch made explicit: expand's own backward sums the gradients back
        q, k, v = (t.expand(*batch, *t.shape[-2:]) for t in (q, k, v))
        return ChunkedAttentionFunction.apply(q, k, v, keep, causal, scale, size)
    with torch.no_grad():
        return _chunked_torch(q, k, v, keep, causal, scale, _fast_rows(size, batch), size, batch)


class ChunkedAttentionFunction(torch.autograd.Function):
    """Exact chunked attention with FlashAttention-2's tiled backward pass (torch).

    ``ChunkedAttentionFunction.apply(q, k, v, keep, causal, scale, chunk_size)`` with
    ``q (..., Lq, d)``, ``k (..., Lk, d)``, ``v (..., Lk, dv)`` sharing one batch shape
    ``(...)``, ``keep`` None or a boolean mask with at least two dimensions that
    broadcasts to ``(..., Lq, Lk)``; returns ``out (..., Lq, dv)``. Arguments are not
    checked here: :func:`chunked_attention` checks them and calls this.

    The forward pass saves q, k, v, the output and the row log-sum-exp
    ``lse (..., Lq, 1)``: ``O(Lq * d)`` numbers, no tile. The backward pass
    recomputes each tile's weights ``P = exp(s - lse)`` (see the module docstring).
    """

    @staticmethod
    def forward(ctx, q, k, v, keep, causal, scale, size):
        batch = tuple(q.shape[:-2])
        lse = q.new_empty((*batch, q.shape[-2], 1))
        rows = _fast_rows(size, batch)
        out = _chunked_torch(q, k, v, keep, causal, scale, rows, size, batch, lse=lse)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.keep, ctx.causal, ctx.scale, ctx.size, ctx.rows = keep, causal, scale, size, rows
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_out):
        q, k, v, out, lse = ctx.saved_tensors
        keep, causal, scale, size, rows = ctx.keep, ctx.causal, ctx.scale, ctx.size, ctx.rows
        lq, lk = q.shape[-2], k.shape[-2]
        d_out = d_out.contiguous()
        delta = (d_out * out).sum(dim=-1, keepdim=True)                # (..., Lq, 1)
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for q0 in range(0, lq, rows):
            q1 = min(q0 + rows, lq)
            q_blk = q[..., q0:q1, :] * scale                           # (..., cq, d)
            do_blk = d_out[..., q0:q1, :]                              # (..., cq, dv)
            for k0 in range(0, _key_range(q0, q1, lk, causal), size):
                k1 = min(k0 + size, lk)
                s = torch.matmul(q_blk, k[..., k0:k1, :].transpose(-1, -2))  # (..., cq, ck)
                tile = _tile_keep(keep, causal, q0, q1, k0, k1, q)
                if tile is not None:
                    s.masked_fill_(~tile, -torch.inf)
                p = s.sub_(lse[..., q0:q1, :]).exp_()                  # the tile's weights
                dv[..., k0:k1, :] += torch.matmul(p.transpose(-1, -2), do_blk)
                dp = torch.matmul(do_blk, v[..., k0:k1, :].transpose(-1, -2))
                ds = dp.sub_(delta[..., q0:q1, :]).mul_(p)             # (..., cq, ck)
                dq[..., q0:q1, :] += torch.matmul(ds, k[..., k0:k1, :])
                dk[..., k0:k1, :] += torch.matmul(ds.transpose(-1, -2), q_blk)
                del s, p, dp, ds                                       # one tile at a time
        return dq.mul_(scale), dk, dv, None, None, None, None


def causal_blocks(n_q: int, n_k: int, chunk_size: int) -> list[tuple[int, int, bool]]:
    """The tiles that causal chunked attention visits, as ``(q0, k0, needs_mask)``.

    Query block ``q0:q0+chunk_size`` meets key block ``k0:k0+chunk_size`` only if
    some key in it is not after every query (``k0 < q1``); ``needs_mask`` is True
    when the tile straddles the diagonal, so some of its entries are masked.
    """
    n_q, n_k = check_count(n_q, "n_q", 0), check_count(n_k, "n_k", 0)
    size = check_count(chunk_size, "chunk_size", 1)
    tiles = []
    for q0 in range(0, n_q, size):
        q1 = min(q0 + size, n_q)
        for k0 in range(0, min(n_k, q1), size):
            k1 = min(k0 + size, n_k)
            tiles.append((q0, k0, k1 - 1 > q0))
    return tiles


# --- shared pieces --------------------------------------------------------------

def _key_range(q0, q1, lk, causal):
    """End of the keys that query block ``q0:q1`` can see."""
    return min(lk, q1) if causal else lk


def _tile_keep(keep, causal, q0, q1, k0, k1, like):
    """Boolean ``(..., q1-q0, k1-k0)`` 'may attend' for one tile, or None if all True."""
    tile = None
    if keep is not None:  # slice the caller's mask; size-1 (broadcast) dims stay as they are
        rows = slice(q0, q1) if keep.shape[-2] != 1 else slice(None)
        cols = slice(k0, k1) if keep.shape[-1] != 1 else slice(None)
        tile = keep[..., rows, cols]
    if causal and k1 - 1 > q0:  # the tile straddles the diagonal: keep key j <= query i
        if isinstance(like, torch.Tensor):
            tri = torch.ones(q1 - q0, k1 - k0, dtype=torch.bool, device=like.device)
            tri = tri.tril(diagonal=q0 - k0)
        else:
            tri = np.tri(q1 - q0, k1 - k0, k=q0 - k0, dtype=bool)
        tile = tri if tile is None else tile & tri
    return tile


# --- plain path: numpy, or torch with autograd ------------------------------------

def _chunked_plain(q, k, v, keep, causal, scale, size, batch):
    """The online softmax written out, one tile at a time (numpy or torch)."""
    xp, neg_inf = array_namespace(q), -math.inf
    lq, lk = q.shape[-2], k.shape[-2]
    if isinstance(q, torch.Tensor):
        out = q.new_zeros((*batch, lq, v.shape[-1]))
    else:
        out = np.zeros((*batch, lq, v.shape[-1]), dtype=np.result_type(q, k, v))
    k_t = k.swapaxes(-1, -2)                                   # (..., d, Lk)
    for q0 in range(0, lq, size):
        q1 = min(q0 + size, lq)
        q_blk = q[..., q0:q1, :] * scale                       # (..., cq, d)
        m = xp.full((*batch, q1 - q0, 1), neg_inf, dtype=out.dtype)   # running max
        l = xp.zeros((*batch, q1 - q0, 1), dtype=out.dtype)           # running sum
        acc = xp.zeros((*batch, q1 - q0, v.shape[-1]), dtype=out.dtype)
        for k0 in range(0, _key_range(q0, q1, lk, causal), size):
            k1 = min(k0 + size, lk)
            s = q_blk @ k_t[..., k0:k1]                        # (..., cq, ck)
            tile = _tile_keep(keep, causal, q0, q1, k0, k1, q)
            if tile is not None:
                s = xp.where(tile, s, neg_inf)
            m_new = xp.maximum(m, xp.amax(s, -1, keepdims=True))
            m_safe = zero_if_empty(m_new)                      # rows with nothing seen yet
            p = xp.exp(s - m_safe)                             # (..., cq, ck)
            alpha = xp.exp(m - m_safe)                         # (..., cq, 1)
            l = alpha * l + p.sum(-1, keepdims=True)           # (..., cq, 1)
            acc = alpha * acc + p @ v[..., k0:k1, :]           # (..., cq, dv)
            m = m_new
        out[..., q0:q1, :] = acc / xp.where(l > 0, l, 1.0)     # empty rows stay 0
    return out


# --- fast path: torch, in place, no autograd -------------------------------------

_TILE_ELEMENTS = 2 ** 21   # scores per tile over the whole batch: 8 MiB in float32


def _fast_rows(size, batch):
    """Query rows per tile of the fast path: ``size``, or fewer (but at least 64)
    so that a tile of ``rows x size`` scores for every batch entry stays in cache."""
    per_row = max(1, math.prod(batch)) * size
    return max(min(size, 64), min(size, _TILE_ELEMENTS // per_row))


def _chunked_torch(q, k, v, keep, causal, scale, rows, size, batch, lse=None):
    """The same tiles (``rows`` queries by ``size`` keys), each tile's scores
    overwritten in place by its weights. If ``lse`` (a ``(..., Lq, 1)`` tensor) is
    given, it receives each row's log-sum-exp ``m + log(l)``, and ``+inf`` for a row
    with no key, so that ``exp(s - lse)`` is 0 on it."""
    lq, lk = q.shape[-2], k.shape[-2]
    out = q.new_empty((*batch, lq, v.shape[-1]))
    k_t = k.transpose(-1, -2)                                  # (..., d, Lk), a view
    for q0 in range(0, lq, rows):
        q1 = min(q0 + rows, lq)
        q_blk = q[..., q0:q1, :] * scale                       # (..., cq, d)
        m = l = acc = None
        for k0 in range(0, _key_range(q0, q1, lk, causal), size):
            k1 = min(k0 + size, lk)
            s = torch.matmul(q_blk, k_t[..., k0:k1])           # (..., cq, ck)
            tile = _tile_keep(keep, causal, q0, q1, k0, k1, q)
            if tile is not None:
                s.masked_fill_(~tile, -torch.inf)
            m_new = s.amax(dim=-1, keepdim=True)               # (..., cq, 1)
            if m is not None:
                torch.maximum(m_new, m, out=m_new)
            shift = m_new
            if keep is not None:  # a row may have seen no key yet: shift it by 0
                shift = m_new.masked_fill(m_new == -torch.inf, 0.0)
            p = s.sub_(shift).exp_()                           # s now holds the weights
            if m is None:                                      # first tile of this row block
                l = p.sum(dim=-1, keepdim=True)
                acc = torch.matmul(p, v[..., k0:k1, :])
            else:
                alpha = m.sub_(shift).exp_()                   # exp(m_old - m_new)
                l.mul_(alpha).add_(p.sum(dim=-1, keepdim=True))
                acc.mul_(alpha).add_(torch.matmul(p, v[..., k0:k1, :]))
            m = m_new
            del s, p                                           # free the tile before the next
        if acc is None:                                        # no key at all (Lk = 0)
            out[..., q0:q1, :] = 0.0
            if lse is not None:
                lse[..., q0:q1, :] = torch.inf
            continue
        if lse is not None:                                    # log(0) = -inf for empty rows
            lse[..., q0:q1, :] = torch.where(l > 0, torch.log(l) + m, torch.inf)
        if keep is not None:                                   # rows that saw no key: 0
            l.masked_fill_(l == 0, 1.0)
        out[..., q0:q1, :] = acc.div_(l)
    return out
