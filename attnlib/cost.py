"""A cost model of attention: floating-point operations and bytes, counted by hand.

Counting convention: a multiply-add is 2 FLOPs, so ``(n, d) @ (d, m)`` costs
``2 * n * d * m``. For one head of size ``d`` with ``n`` queries and ``m`` keys::

    scores   S = Q K^T * scale       2 * n * m * d
    softmax  P = softmax(S)          5 * n * m     (max, subtract, exp, sum, divide)
    output   O = P V                 2 * n * m * d

so about ``4 * n * m * d`` per head and ``4 * n**2 * d_model`` over all heads when
``m = n`` (the heads split ``d_model = heads * d``). The four projections of
multi-head attention (Q, K, V and the output, each ``d_model x d_model``) cost about
``8 * n * d_model**2``, and the position-wise feed-forward layer of a Transformer block,
``d_model -> F -> d_model``, another ``4 * n * d_model * F`` (``16 * n * d_model**2`` for the
usual ``F = 4 * d_model``). The quadratic term overtakes the projections from
``n = 2 * d_model`` on, and the whole layer's linear work from ``n = 2 * d_model + F`` on
(``6 * d_model`` for ``F = 4 * d_model``).

Memory counts the arrays a call holds besides its inputs: the output, and either one
full ``(n, m)`` score matrix per head (dense attention) or one ``(chunk, chunk)`` tile
per head plus a running maximum, sum and accumulator (chunked attention).
"""

from __future__ import annotations

import numpy as np
import torch

from ._common import check_count, check_flag


def _pairs(n: int, m: int, causal: bool) -> int:
    """Query-key pairs that are computed: ``n * m``, or the kept ones if causal.

    Causal is aligned top-left like torch: query ``i`` sees keys ``0..min(i, m-1)``.
    """
    if not causal:
        return n * m
    full = max(0, n - m)                    # queries past the last key see all m keys
    ramp = min(n, m)                        # queries 0..ramp-1 see i + 1 keys
    return ramp * (ramp + 1) // 2 + full * m


def _sizes(n, d, heads, batch, n_kv):
    n = check_count(n, "n", 1)
    d = check_count(d, "d", 1)
    heads = check_count(heads, "heads", 1)
    batch = check_count(batch, "batch", 1)
    m = n if n_kv is None else check_count(n_kv, "n_kv", 1)
    return n, d, heads, batch, m


def _itemsize(dtype) -> int:
    """Bytes per element of a dtype given as a string, numpy dtype or torch dtype."""
    if isinstance(dtype, torch.dtype):
        return torch.empty((), dtype=dtype).element_size()
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype must be a numpy/torch dtype or its name, got {dtype!r}") from err
    if dt.kind != "f":
        raise ValueError(f"dtype must be a floating-point type, got {dt}")
    return dt.itemsize


def attention_flops(n: int, d: int, *, heads: int = 1, batch: int = 1, n_kv: int | None = None,
                    causal: bool = False, projections: bool = False,
                    feed_forward: int = 0) -> dict[str, int]:
    """Floating-point operations of multi-head scaled dot-product attention.

    Args:
        n: number of queries (the sequence length).
        d: size of one head; the model width is ``d_model = heads * d``.
        heads: number of heads ``H``.
        batch: batch size ``B``.
        n_kv: number of keys and values ``m`` (default ``n``, self-attention).
        causal: count only the query-key pairs a causal mask keeps (top-left
            aligned), as a kernel that skips masked work would do.
        projections: also count the four ``d_model x d_model`` projections.
        feed_forward: hidden width ``F`` of a position-wise feed-forward layer
            ``(n, d_model) -> (n, F) -> (n, d_model)`` to count as well (3072 in
            BERT-base); 0 (the default) leaves it out.

    Returns:
        The FLOPs of each part, as a dict with ``"scores"`` (``2 B H n m d``), ``"softmax"`` (``5 B H n m``),
        ``"weighted_sum"`` (``2 B H n m d``), ``"projections"`` (``4 B (n + m) d_model**2``
        if requested, else 0), ``"feed_forward"`` (``4 B n d_model F``) and their
        ``"total"``. With ``causal=True`` the
        three attention terms use the number of kept pairs instead of ``n m``.
    """
    n, d, heads, batch, m = _sizes(n, d, heads, batch, n_kv)
    feed_forward = check_count(feed_forward, "feed_forward", 0)
    projections = check_flag(projections, "projections")
    pairs = batch * heads * _pairs(n, m, check_flag(causal, "causal"))
    d_model = heads * d
    out = {
        "scores": 2 * pairs * d,
        "softmax": 5 * pairs,
        "weighted_sum": 2 * pairs * d,
        # Q and the output projection act on n rows, K and V on m rows
        "projections": 4 * batch * (n + m) * d_model ** 2 if projections else 0,
        # two products, (n, d_model) @ (d_model, F) and (n, F) @ (F, d_model), on the n query rows
        "feed_forward": 4 * batch * n * d_model * feed_forward,
    }
    out["total"] = sum(out.values())
    return out


def attention_memory_bytes(n: int, d: int, *, heads: int = 1, batch: int = 1,
                           n_kv: int | None = None, dtype="float32",
                           chunk_size: int | None = None) -> dict[str, int]:
    """Bytes of the arrays attention works with, for dense or chunked attention.

    Args:
        n, d, heads, batch, n_kv: as in :func:`attention_flops`; q, k and v have
            shapes ``(B, H, n, d)``, ``(B, H, m, d)`` and ``(B, H, m, d)``.
        dtype: floating-point dtype (name, numpy or torch dtype); float32 = 4 bytes.
        chunk_size: None for dense attention, which holds a full ``(B, H, n, m)``
            score matrix; an int for chunked attention, which holds one
            ``(B, H, c, c)`` tile with ``c = chunk_size`` (at most ``n`` by ``m``)
            and a running max, sum and accumulator of shape ``(B, H, c, d + 2)``.

    Returns:
        The bytes of each part, as a dict with ``"inputs"`` (q, k, v), ``"output"`` (``B H n d``),
        ``"scores"`` (the score matrix or the tile), ``"state"`` (the running
        statistics, 0 for dense) and ``"extra"`` = output + scores + state, the
        memory a call needs beyond its inputs.
    """
    n, d, heads, batch, m = _sizes(n, d, heads, batch, n_kv)
    item = _itemsize(dtype)
    bh = batch * heads
    if chunk_size is None:
        scores, state = bh * n * m * item, 0
    else:
        c = check_count(chunk_size, "chunk_size", 1)
        scores = bh * min(c, n) * min(c, m) * item
        state = bh * min(c, n) * (d + 2) * item
    out = {"inputs": bh * (n + 2 * m) * d * item, "output": bh * n * d * item,
           "scores": scores, "state": state}
    out["extra"] = out["output"] + scores + state
    return out


def crossover_length(d_model: int, *, feed_forward: int = 0) -> int:
    """The self-attention length from which attention's two matrix products cost as much as
    the layer's linear work.

    Attention's products (scores and weighted sum, all heads) cost ``4 n^2 d_model``; the four
    projections cost ``8 n d_model^2`` and a feed-forward layer of hidden width ``F`` another
    ``4 n d_model F``. The two sides are equal at ``n = 2 d_model + F``; the softmax is left out.

    Args:
        d_model: model width ``D``.
        feed_forward: hidden width ``F`` of the feed-forward layer to include; 0 (the default)
            compares attention with the projections alone, giving ``2 D``. With ``F = 4 D``, as in
            BERT and GPT, the whole layer's crossover is ``6 D`` (4608 for BERT-base).

    Returns:
        The length ``n`` (an int) at which the two costs are equal.
    """
    d_model = check_count(d_model, "d_model", 1)
    return 2 * d_model + check_count(feed_forward, "feed_forward", 0)
