"""Boolean masks of the sparse attention patterns: True = may attend.

Every builder returns a numpy array of shape ``(n, n)`` (query ``i`` is row ``i``,
key ``j`` is column ``j``), ready to pass as ``mask=`` to
:func:`attnlib.scaled_dot_product_attention`. These dense masks are the
*reference* for the sparse implementations (``attnlib.local``,
``attnlib.block_sparse``, ``attnlib.strided``): those compute the same attention
without ever building an ``(n, n)`` array.

Non-zeros per row, for sequence length ``n``:

- ``local_mask``: ``|i - j| <= window``, at most ``2w + 1`` (any dilation);
- ``longformer_mask``: the window plus ``g`` global tokens, about ``2w + 1 + g``
  (``n`` for the rows of global tokens);
- ``strided_mask``: ``|i - j| <= stride`` or ``stride`` divides ``i - j``, about ``2l + n/l``
  (half of it causal), smallest near ``l = sqrt(n)``;
- ``fixed_mask``: same block of ``l``, or a summary column, about ``l + c n / l``;
- ``bigbird_mask``: window, global and random blocks, about ``(2w + 1 + g + r) b``.
"""

from __future__ import annotations

import numpy as np
import torch

from ._common import as_layout, ceil_div, check_count, check_flag


def _offsets(n: int):
    """``(i, j, i - j)`` as broadcastable index grids of shapes ``(n, 1)``, ``(1, n)``, ``(n, n)``."""
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    return i, j, i - j


def local_mask(n: int, window: int, *, causal: bool = False, dilation: int = 1) -> np.ndarray:
    """Sliding-window mask of shape ``(n, n)``.

    Query ``i`` may attend key ``j`` iff ``j - i = m * dilation`` for an integer
    ``m`` with ``|m| <= window``; with ``causal=True`` only ``m <= 0`` (keys at or
    before the query). With ``dilation=1`` this is the band ``|i - j| <= window``
    (causal: ``i - window <= j <= i``), so every row holds at most
    ``2 * window + 1`` keys (causal: ``window + 1``).

    Args:
        n: sequence length (queries and keys), an int >= 1.
        window: how many keys on each side a query reaches, an int >= 0.
        causal: keep only keys ``j <= i``.
        dilation: gap between attended keys, an int >= 1 (dilated sliding window).

    Returns:
        numpy bool array of shape ``(n, n)``.
    """
    causal = check_flag(causal, "causal")
    n = check_count(n, "n", 1)
    window = check_count(window, "window", 0)
    dilation = check_count(dilation, "dilation", 1)
    _, _, off = _offsets(n)                  # off[i, j] = i - j
    keep = (np.abs(off) <= window * dilation) & (off % dilation == 0)
    return keep & (off >= 0) if causal else keep


def global_token_index(global_tokens, n: int) -> np.ndarray:
    """Sorted distinct positions of the global tokens, as an int64 numpy array of shape ``(g,)``.

    ``global_tokens`` is a sequence of ints in ``[0, n)`` (a list, or a 1-D int
    numpy array or torch tensor), or a boolean array of shape ``(n,)`` that is
    True at the global positions. Negative positions count from the end.
    """
    n = check_count(n, "n", 1)
    if isinstance(global_tokens, torch.Tensor):
        global_tokens = global_tokens.detach().cpu().numpy()
    arr = np.asarray(global_tokens)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype == np.bool_:
        if arr.shape != (n,):
            raise ValueError(f"global_tokens as a boolean mask must have shape ({n},), "
                             f"got shape {arr.shape}")
        return np.flatnonzero(arr).astype(np.int64)
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise TypeError(f"global_tokens must be a 1-D sequence of int positions or a boolean "
                        f"mask of shape ({n},), got shape {arr.shape} and dtype {arr.dtype}")
    if arr.min() < -n or arr.max() >= n:
        raise ValueError(f"global_tokens must be positions in [-{n}, {n}) for a sequence of "
                         f"length n={n}, got {arr.tolist()}")
    return np.unique(arr % n).astype(np.int64)


def longformer_mask(n: int, window: int, global_tokens) -> np.ndarray:
    """Longformer mask of shape ``(n, n)``: a sliding window plus global tokens.

    Query ``i`` may attend key ``j`` iff ``|i - j| <= window``, or ``i`` is a
    global token (it attends to everything), or ``j`` is a global token
    (everything attends to it). ``global_tokens`` is as in
    :func:`global_token_index`. Symmetric.

    Returns:
        numpy bool array of shape ``(n, n)``.
    """
    keep = local_mask(n, window)
    is_global = np.zeros(n, dtype=bool)
    is_global[global_token_index(global_tokens, n)] = True
    return keep | is_global[:, None] | is_global[None, :]


def strided_mask(n: int, stride: int, *, causal: bool = True) -> np.ndarray:
    """Strided pattern of the Sparse Transformer, shape ``(n, n)``.

    The union of its two heads: query ``i`` may attend key ``j`` iff
    ``|i - j| <= stride`` (the local head) or ``i - j`` is a multiple of
    ``stride`` (the strided head); with ``causal=True`` (the default, as in the
    Sparse Transformer) only keys ``j <= i``. With ``stride`` near ``sqrt(n)`` a
    row holds about ``2 sqrt(n)`` keys, and every key ``j <= i`` is reachable
    from query ``i`` in two steps (local, then strided).

    Args:
        n: sequence length, an int >= 1.
        stride: the period ``l``, an int >= 1.
        causal: keep only keys ``j <= i``.

    Returns:
        numpy bool array of shape ``(n, n)``.
    """
    causal = check_flag(causal, "causal")
    n = check_count(n, "n", 1)
    stride = check_count(stride, "stride", 1)
    _, _, off = _offsets(n)
    keep = (np.abs(off) <= stride) | (off % stride == 0)
    return keep & (off >= 0) if causal else keep


def fixed_mask(n: int, stride: int, *, summary: int = 1, causal: bool = True) -> np.ndarray:
    """Fixed pattern of the Sparse Transformer, shape ``(n, n)``.

    The sequence is cut into blocks of ``stride`` positions. Query ``i`` may
    attend key ``j`` iff ``j`` lies in the same block as ``i``
    (``j // stride == i // stride``) or ``j`` is a *summary* position, one of
    the last ``summary`` positions of its block (``j % stride >= stride - summary``);
    with ``causal=True`` (the default) only keys ``j <= i``.

    Args:
        n: sequence length, an int >= 1.
        stride: the block length ``l``, an int >= 1.
        summary: summary positions per block ``c``, an int in ``[1, stride]``.
        causal: keep only keys ``j <= i``.

    Returns:
        numpy bool array of shape ``(n, n)``.
    """
    causal = check_flag(causal, "causal")
    n = check_count(n, "n", 1)
    stride = check_count(stride, "stride", 1)
    summary = check_count(summary, "summary", 1)
    if summary > stride:
        raise ValueError(f"summary must be <= stride={stride}, got {summary}")
    i, j, off = _offsets(n)
    keep = (i // stride == j // stride) | (j % stride >= stride - summary)
    return keep & (off >= 0) if causal else keep


def bigbird_layout(n_blocks: int, *, window: int = 1, num_global: int = 1, num_random: int = 2,
                   seed: int = 0) -> np.ndarray:
    """BigBird block layout of shape ``(n_blocks, n_blocks)``: True = the query block attends the key block.

    Block ``(I, J)`` is kept iff ``|I - J| <= window`` (sliding blocks), or ``I``
    or ``J`` is one of the first ``num_global`` blocks (global blocks attend to
    everything and everything attends to them), or ``J`` is one of the
    ``num_random`` random blocks of row ``I``. The random blocks of each
    non-global row are drawn without replacement from the blocks that row does
    not already keep (all of them, if fewer remain), with
    ``numpy.random.default_rng(seed)``: the same seed gives the same layout.

    Returns:
        numpy bool array of shape ``(n_blocks, n_blocks)``.
    """
    nb = check_count(n_blocks, "n_blocks", 1)
    window = check_count(window, "window", 0)
    num_global = check_count(num_global, "num_global", 0)
    num_random = check_count(num_random, "num_random", 0)
    seed = check_count(seed, "seed", 0)
    I = np.arange(nb)[:, None]
    J = np.arange(nb)[None, :]
    layout = (np.abs(I - J) <= window) | (I < num_global) | (J < num_global)
    rng = np.random.default_rng(seed)
    for row in range(num_global, nb):
        free = np.flatnonzero(~layout[row])
        if free.size:
            layout[row, rng.choice(free, size=min(num_random, free.size), replace=False)] = True
    return layout


def layout_to_mask(layout, block_size: int, n_q: int | None = None,
                   n_k: int | None = None) -> np.ndarray:
    """Token mask of shape ``(n_q, n_k)`` from a block layout of shape ``(nb_q, nb_k)``.

    ``mask[i, j] = layout[i // block_size, j // block_size]``. ``n_q`` and
    ``n_k`` default to the full ``nb_q * block_size`` and ``nb_k * block_size``;
    shorter lengths crop the last block (they must still need all the blocks).
    """
    block_size = check_count(block_size, "block_size", 1)
    layout = as_layout(layout)
    nbq, nbk = layout.shape
    n_q = nbq * block_size if n_q is None else check_count(n_q, "n_q", 1)
    n_k = nbk * block_size if n_k is None else check_count(n_k, "n_k", 1)
    for name, length, blocks in (("n_q", n_q, nbq), ("n_k", n_k, nbk)):
        if ceil_div(length, block_size) != blocks:
            raise ValueError(f"{name}={length} with block_size={block_size} needs "
                             f"{ceil_div(length, block_size)} blocks, but the layout has {blocks}")
    return layout[np.arange(n_q)[:, None] // block_size, np.arange(n_k)[None, :] // block_size]


def bigbird_mask(n: int, block_size: int, *, window: int = 1, num_global: int = 1,
                 num_random: int = 2, seed: int = 0) -> np.ndarray:
    """BigBird mask of shape ``(n, n)``: :func:`bigbird_layout` expanded to tokens.

    The sequence is cut into ``ceil(n / block_size)`` blocks (the last may be
    shorter); ``window``, ``num_global``, ``num_random`` and ``seed`` are as in
    :func:`bigbird_layout`, counted in blocks. Seeded: the same arguments give
    the same mask.

    Returns:
        numpy bool array of shape ``(n, n)``.
    """
    n = check_count(n, "n", 1)
    block_size = check_count(block_size, "block_size", 1)
    layout = bigbird_layout(ceil_div(n, block_size), window=window, num_global=num_global,
                            num_random=num_random, seed=seed)
    return layout_to_mask(layout, block_size, n, n)
