"""Block-sparse attention: attention restricted to the blocks of a layout (BigBird and kin).

Reference semantics (dense, quadratic)::

    block_sparse_attention(q, k, v, layout=L, block_size=b)
        == scaled_dot_product_attention(q, k, v, mask=layout_to_mask(L, b, Lq, Lk))

The fast path cuts queries and keys into blocks of ``b`` positions. Each query
block *gathers* only the key blocks its layout row keeps (at most ``r`` of
them), so the scores of a block are ``(b, r b)`` instead of ``(b, Lk)``. Rows
that keep every block (BigBird's global blocks) are computed as ordinary dense
rows. The cost is ``O(Lq r b)`` plus ``O(Lk)`` per dense row: linear in the
length for a fixed number of blocks per row.
"""

from __future__ import annotations

import numpy as np

from ._common import (as_layout, as_qkv, blocks, ceil_div, check_count, concat, default_scale,
                      pad_seq, self_attention_inputs, take)
from .attention import scaled_dot_product_attention
from .flex import check_backend, flex_masked_attention
from .local import blocked_attention
from .sparse_masks import bigbird_layout


def block_sparse_attention(q, k, v, *, layout, block_size, scale=None, backend="plain"):
    """Attention in which query block ``I`` attends key block ``J`` iff ``layout[I, J]``.

    Positions ``I*b .. I*b + b - 1`` form block ``I`` (``b = block_size``; the
    last block may be shorter). A query row whose layout row is all False gets
    zeros.

    Args:
        q: queries, shape ``(..., Lq, d)``.
        k: keys, shape ``(..., Lk, d)``.
        v: values, shape ``(..., Lk, dv)``. All numpy arrays or all torch tensors.
        layout: boolean array of shape ``(ceil(Lq / b), ceil(Lk / b))``.
        block_size: positions per block ``b``, an int >= 1.
        scale: factor applied to the scores; default ``1 / sqrt(d)``.
        backend: ``"plain"`` (this module's gathered blocks) or ``"flex"`` (a compiled
            ``flex_attention`` kernel, torch only: see ``attnlib.flex``).

    Returns:
        ``out`` of shape ``(..., Lq, dv)`` and the type of ``q``.
    """
    q, k, v, _ = as_qkv(q, k, v)
    b = check_count(block_size, "block_size", 1)
    layout = as_layout(layout)
    lq, lk = q.shape[-2], k.shape[-2]
    need = (ceil_div(lq, b), ceil_div(lk, b))
    if layout.shape != need:
        raise ValueError(f"layout of shape {layout.shape} does not fit q of length {lq} and k of "
                         f"length {lk} in blocks of {b}: it needs shape {need}")
    scale = default_scale(scale, q.shape[-1])
    if check_backend(backend, q) == "flex":
        rows = tuple(tuple(bool(x) for x in row) for row in layout)
        return flex_masked_attention(q, k, v, "layout", (rows, b), scale=scale)
    nbq, nbk = need

    dense = np.flatnonzero(layout.all(axis=1))        # query blocks that see every key block
    sparse = np.flatnonzero(~layout.all(axis=1))      # the others: gather their key blocks
    parts = []                                        # (token positions, output rows)
    if sparse.size:
        rows = layout[sparse]                                        # (R, nbk)
        r = max(int(rows.sum(axis=1).max()), 1)                      # key blocks per row, padded
        order = np.argsort(~rows, axis=1, kind="stable")[:, :r]      # kept blocks first
        slot_ok = np.take_along_axis(rows, order, axis=1)            # (R, r): a real block?
        key_pos = order[:, :, None] * b + np.arange(b)               # (R, r, b) key positions
        keep = (slot_ok[:, :, None] & (key_pos < lk)).reshape(len(sparse), 1, r * b)

        qb = blocks(pad_seq(q, 0, nbq * b - lq), b)                  # (..., nbq, b, d)
        kb, vb = (blocks(pad_seq(x, 0, nbk * b - lk), b) for x in (k, v))  # (..., nbk, b, .)
        qs = take(qb, sparse, -3)                                    # (..., R, b, d)
        ks, vs = (take(x, order.reshape(-1), -3) for x in (kb, vb))  # (..., R * r, b, .)
        ks, vs = (x.reshape(*x.shape[:-3], len(sparse), r * b, x.shape[-1]) for x in (ks, vs))
        out = blocked_attention(qs, ks, vs, keep, scale)            # (..., R, b, dv)
        pos = (sparse[:, None] * b + np.arange(b)).reshape(-1)       # (R b,) query positions
        out = out.reshape(*out.shape[:-3], -1, out.shape[-1])
        parts.append((pos[pos < lq], out[..., : len(sparse) * b, :][..., pos < lq, :]))
    if dense.size:
        pos = (dense[:, None] * b + np.arange(b)).reshape(-1)
        pos = pos[pos < lq]
        parts.append((pos, scaled_dot_product_attention(take(q, pos, -2), k, v, scale=scale)))

    if len(parts) == 1 and len(parts[0][0]) == lq:                   # already in order
        return parts[0][1]
    perm = np.argsort(np.concatenate([p for p, _ in parts]))       # back to positions 0..Lq-1
    return take(concat([o for _, o in parts], -2), perm, -2)


def bigbird_attention(q, k, v, *, block_size, window=1, num_global=1, num_random=2, seed=0,
                      scale=None, backend="plain"):
    """BigBird attention: :func:`block_sparse_attention` with a :func:`bigbird_layout`.

    Equal to dense attention with ``mask=bigbird_mask(n, block_size, window=...,
    num_global=..., num_random=..., seed=...)``.

    Args:
        q, k, v: shapes ``(..., n, d)``, ``(..., n, d)``, ``(..., n, dv)``.
        block_size: positions per block, an int >= 1.
        window, num_global, num_random, seed: the layout, in blocks (see
            :func:`attnlib.bigbird_layout`).
        scale: factor applied to the scores; default ``1 / sqrt(d)``.
        backend: ``"plain"`` or ``"flex"`` (see :func:`block_sparse_attention`).

    Returns:
        ``out`` of shape ``(..., n, dv)`` and the type of ``q``.
    """
    q, k, v, n, _ = self_attention_inputs(q, k, v, scale)
    b = check_count(block_size, "block_size", 1)
    layout = bigbird_layout(max(1, ceil_div(n, b)), window=window, num_global=num_global,
                            num_random=num_random, seed=seed)
    return block_sparse_attention(q, k, v, layout=layout, block_size=b, scale=scale,
                                  backend=backend)


