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
    softmax written out; both compute the same thing. The fast path may cut a tile
    into smaller ones, so that one tile of scores over the whole batch stays small
    enough for the processor's cache.
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
        return _chunked_torch(q, k, v, keep, causal, scale, *_fast_tile(size, batch), batch)


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
        rows, cols = _fast_tile(size, batch)
        out = _chunked_torch(q, k, v, keep, causal, scale, rows, cols, batch, lse=lse)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.keep, ctx.causal, ctx.scale, ctx.rows, ctx.cols = keep, causal, scale, rows, cols
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_out):
        q, k, v, out, lse = ctx.saved_tensors
        keep, causal, scale, rows, size = ctx.keep, ctx.causal, ctx.scale, ctx.rows, ctx.cols
        batch, lq, lk = tuple(q.shape[:-2]), q.shape[-2], k.shape[-2]
        q3, k3, v3, out3, d_out3 = (_flat(t, batch) for t in (q, k, v, out, d_out))
        neg_lse = _flat(lse, batch).neg()                             # (G, Lq, 1)
        neg_delta = (d_out3 * out3).sum(dim=-1, keepdim=True).neg_()   # -rowsum(dO * O)
        k_t, v_t = k3.transpose(1, 2), v3.transpose(1, 2)             # (G, d, Lk), (G, dv, Lk)
        dq, dk, dv = torch.zeros_like(q3), torch.zeros_like(k3), torch.zeros_like(v3)
        s_buf = q3.new_empty((q3.shape[0], min(rows, lq), min(size, lk)))  # one tile, reused
        dp_buf = torch.empty_like(s_buf)
        for q0 in range(0, lq, rows):
            q1 = min(q0 + rows, lq)
            q_blk, do_blk = q3[:, q0:q1], d_out3[:, q0:q1]             # (G, cq, d), (G, cq, dv)
            for k0 in range(0, _key_range(q0, q1, lk, causal), size):
                k1 = min(k0 + size, lk)
                s = _product(q_blk, k_t[..., k0:k1], scale, neg_lse[:, q0:q1], s_buf)  # s - lse
                tile = _tile_keep(keep, causal, q0, q1, k0, k1, q)
                p = _masked(s, tile, batch).exp_()                     # the tile's weights
                _add_product(dv[:, k0:k1], p.transpose(1, 2), do_blk)
                dp = _product(do_blk, v_t[..., k0:k1], 1.0, neg_delta[:, q0:q1], dp_buf)
                ds = dp.mul_(p)                                        # P * (dP - delta)
                _add_product(dq[:, q0:q1], ds, k3[:, k0:k1], scale)
                _add_product(dk[:, k0:k1], ds.transpose(1, 2), q_blk, scale)
        return dq.view(q.shape), dk.view(k.shape), dv.view(v.shape), None, None, None, None


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

_TILE_ELEMENTS = 2 ** 22   # scores per tile over the whole batch: 16 MiB in float32
_GROWTH = 2.0 ** 64        # how far a row's exponentials may grow before it is shifted again
_MODERATE = 16.0           # row maxima within +-16: shift by 0, so a tile needs no subtraction


def _fast_tile(size, batch):
    """Query rows and key columns per tile of the fast path: ``size`` each, halved (the
    longer side first, down to 64) until a tile of scores for every batch entry holds at
    most ``2**22``: small enough for the processor's cache, large enough that each torch
    call gives its threads plenty of work. Squarer tiles measured faster than thin slices
    of rows, and ``2**22`` faster than ``2**21``."""
    rows = cols = size
    per_tile = max(1, math.prod(batch))
    while per_tile * rows * cols > _TILE_ELEMENTS and max(rows, cols) > 64:
        if cols >= rows:
            cols = max(64, cols // 2)
        else:
            rows = max(64, rows // 2)
    return rows, cols


def _flat(x, batch):
    """``x`` of shape ``(..., L, d)`` broadcast to the batch shape ``(...)`` and returned
    as ``(G, L, d)`` with ``G = prod(batch)``: the one batch dimension of ``bmm``."""
    return x.expand(*batch, *x.shape[-2:]).reshape(math.prod(batch), *x.shape[-2:])


def _product(a, b, alpha, neg_shift, buf):
    """``alpha * a @ b - shift`` in one matrix product (``torch.baddbmm``), for ``a (G, r, d)``,
    ``b (G, d, c)`` and ``neg_shift`` ``(G, r, 1)`` (minus the shift) or None for 0, written
    into the front ``(G, r, c)`` of ``buf``: one tile buffer serves every tile of a call. The
    subtraction costs no extra pass over the result."""
    out = buf[:, :a.shape[1], :b.shape[2]]
    if neg_shift is None:
        return torch.baddbmm(out, a, b, beta=0.0, alpha=alpha, out=out)
    return torch.baddbmm(neg_shift.expand(out.shape), a, b, alpha=alpha, out=out)


def _add_product(out, a, b, alpha=1.0):
    """``out += alpha * a @ b`` in place, for ``out (G, r, c)``, ``a (G, r, d)``, ``b (G, d, c)``.
    Written as ``torch.baddbmm(out, a, b, out=out)``, which torch's FLOP counter counts
    (it does not count ``Tensor.baddbmm_``)."""
    return torch.baddbmm(out, a, b, alpha=alpha, out=out)


def _masked(s, tile, batch):
    """The tile of scores ``s (G, r, c)`` with ``-inf`` where ``tile`` (None or boolean,
    broadcastable to ``(..., r, c)``) is False, in place."""
    if tile is not None:
        s.view(*batch, *s.shape[1:]).masked_fill_(~tile, -torch.inf)
    return s


def _chunked_torch(q, k, v, keep, causal, scale, rows, size, batch, lse=None):
    """Tiles of ``rows`` queries by ``size`` keys as ``(G, rows, size)`` matrix products
    over the batch flattened to ``G`` entries; ``q (..., Lq, d)``, ``k (..., Lk, d)``,
    ``v (..., Lk, dv)``, returns ``out (..., Lq, dv)``. If ``lse`` (a ``(..., Lq, 1)``
    tensor) is given, it receives each row's log-sum-exp, and ``+inf`` for a row with
    no key, so that ``exp(s - lse)`` is 0 on it.

    Softmax does not change when a row's scores all move by the same amount, so the
    shift ``m`` need not be the running maximum: any value that keeps the exponentials
    finite will do. A row block starts with exact updates. Once every row has seen a
    key, it keeps its shift (0 when the maxima are moderate) and each later tile costs
    one product that subtracts the shift, one exponential in place and one row sum; no
    maximum. A tile whose exponentials grew past ``2**64`` in some row is redone with
    the exact update, which moves the shift up.
    """
    lq, lk = q.shape[-2], k.shape[-2]
    q, k, v = (_flat(t, batch) for t in (q, k, v))             # (G, L, .)
    out = q.new_empty((q.shape[0], lq, v.shape[-1]))
    lse = None if lse is None else lse.view(q.shape[0], lq, 1)
    k_t = k.transpose(1, 2)                                    # (G, d, Lk), a view
    buf = q.new_empty((q.shape[0], min(rows, lq), min(size, lk)))   # one tile, reused
    for q0 in range(0, lq, rows):
        q1 = min(q0 + rows, lq)
        q_blk = q[:, q0:q1]                                    # (G, cq, d)
        m = l = acc = neg_shift = None                         # shift, sum, weighted sum
        settled = False                                        # every row has seen a key
        for k0 in range(0, _key_range(q0, q1, lk, causal), size):
            k1 = min(k0 + size, lk)
            tile = _tile_keep(keep, causal, q0, q1, k0, k1, q)
            if settled:  # one product, one exponential, one sum
                s = _product(q_blk, k_t[..., k0:k1], scale, neg_shift, buf)     # s - shift
                p = _masked(s, tile, batch).exp_()
                p_sum = p.sum(dim=-1, keepdim=True)            # (G, cq, 1)
                if p_sum.max() <= _GROWTH:
                    l.add_(p_sum)
                    _add_product(acc, p, v[:, k0:k1])
                    continue
            # the exact update: shift by the running maximum and rescale what came before
            s = _masked(_product(q_blk, k_t[..., k0:k1], scale, None, buf), tile, batch)
            m_new = s.amax(dim=-1, keepdim=True)               # (G, cq, 1)
            if m is not None:
                torch.maximum(m_new, m, out=m_new)
            shift = zero_if_empty(m_new)                       # a row with no key yet: 0
            p = s.sub_(shift).exp_()                           # s now holds the weights
            if m is None:                                      # first tile of this row block
                l = p.sum(dim=-1, keepdim=True)
                acc = torch.bmm(p, v[:, k0:k1])
            else:
                alpha = m.sub_(shift).exp_()                   # exp(m_old - m_new)
                l.mul_(alpha).add_(p.sum(dim=-1, keepdim=True))
                _add_product(acc.mul_(alpha), p, v[:, k0:k1])
            m = m_new
            settled = bool(torch.isfinite(m).all())
            if settled and m.abs().max() <= _MODERATE:         # from here on shift by 0
                alpha = m.exp()
                l.mul_(alpha)
                acc.mul_(alpha)
                m.zero_()
            neg_shift = m.neg() if m.any() else None
        if acc is None:                                        # no key at all (Lk = 0)
            out[:, q0:q1] = 0.0
            if lse is not None:
                lse[:, q0:q1] = torch.inf
            continue
        if lse is not None:                                    # log(0) = -inf for empty rows
            lse[:, q0:q1] = torch.where(l > 0, torch.log(l) + m, torch.inf)
        if keep is not None:                                   # rows that saw no key: 0
            l.masked_fill_(l == 0, 1.0)
        out[:, q0:q1] = acc.div_(l)
    return out.view(*batch, lq, out.shape[-1])
