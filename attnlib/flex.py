"""A compiled backend for the sparse patterns: torch's ``flex_attention`` with a block mask.

``torch.nn.attention.flex_attention`` takes the pattern as a function of positions,
``mask_mod(b, h, i, j) -> bool`` (True = query ``i`` may attend key ``j``), and
``create_block_mask`` turns it into a *block mask*: which ``128 x 128`` tiles hold
an allowed pair at all. ``torch.compile`` then generates one kernel that visits only
those tiles and applies ``mask_mod`` inside the tiles on the boundary. On a CPU the
kernel is C++, so it needs a C++ compiler, and the first call of every new shape and
pattern compiles it (tens of seconds): :func:`first_call_seconds` reports that time.
Up to :data:`RECOMPILE_LIMIT` kernels are kept per process (torch's own default is 8, after
which it would quietly run an unfused version that builds every score); past it a call raises.

Every pattern here is written with its numbers held in tensors, so that one compiled
kernel serves every window size or stride of a pattern::

    window:     lo <= i - j <= hi  and  (i - j) % dilation == 0     (lo = -hi, or 0 if causal)
    longformer: |i - j| <= w  or  is_global[i]  or  is_global[j]
    layout:     layout[i // block_size, j // block_size]            (block sparse, BigBird)
    strided:    (|i - j| <= l  or  (i - j) % l == 0)  and  (i >= j if causal)

The plain implementations in :mod:`attnlib.local`, :mod:`attnlib.block_sparse` and
:mod:`attnlib.strided` stay the readable reference and the default; each of them
takes ``backend="flex"`` to run here instead.
"""

from __future__ import annotations

import functools
import inspect
import shutil
import time

import numpy as np
import torch

from ._common import check_flag

__all__ = ["BACKENDS", "RECOMPILE_LIMIT", "check_backend", "flex_available",
           "flex_masked_attention", "window_mask_mod", "longformer_mask_mod", "layout_mask_mod",
           "strided_mask_mod", "first_call_seconds"]

BACKENDS = ("plain", "flex")
RECOMPILE_LIMIT = 64      # compiled kernels (shape, dtype, pattern) kept per process

_first_calls: dict[tuple, float] = {}


def flex_available() -> bool:
    """True if this torch has ``flex_attention`` and a ``torch.compile`` that takes a
    ``recompile_limit``, and a C++ compiler is on the PATH (what ``torch.compile`` needs
    to build the CPU kernel)."""
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except ImportError:
        return False
    if "recompile_limit" not in inspect.signature(torch.compile).parameters:
        return False
    return any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++"))


def check_backend(backend, q) -> str:
    """Return ``backend``, checked to be one of :data:`BACKENDS`; ``"flex"`` needs
    torch tensors ``q`` and :func:`flex_available`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "flex":
        if not isinstance(q, torch.Tensor):
            raise TypeError(f"backend 'flex' needs torch tensors, got q of type {type(q).__name__}")
        if not flex_available():
            raise RuntimeError("backend 'flex' needs torch.nn.attention.flex_attention, a "
                               "torch.compile that takes recompile_limit (torch 2.13 does) and a "
                               "C++ compiler; use backend='plain'")
    return backend


@functools.cache
def _compiled():
    from torch.nn.attention.flex_attention import flex_attention
    return torch.compile(flex_attention, dynamic=False, fullgraph=True,
                         recompile_limit=RECOMPILE_LIMIT)


@functools.lru_cache(maxsize=32)
def _block_mask(pattern, params, lq, lk):
    from torch.nn.attention.flex_attention import create_block_mask
    return create_block_mask(_MASK_MODS[pattern](*params), None, None, lq, lk, device="cpu")


def flex_masked_attention(q, k, v, pattern: str, params: tuple, *, scale: float):
    """Attention restricted by a pattern, through compiled ``flex_attention``.

    Args:
        q: queries ``(..., Lq, d)``; k: keys ``(..., Lk, d)``; v: values ``(..., Lk, dv)``;
            torch tensors of one dtype, already checked by the caller, batch shapes equal
            or broadcastable.
        pattern: ``"window"``, ``"longformer"``, ``"layout"`` or ``"strided"``.
        params: the arguments of that pattern's ``*_mask_mod`` function, hashable
            (ints, bools, tuples), so that its block mask is built once per length.
        scale: factor applied to the scores.

    Returns:
        ``out`` of shape ``(..., Lq, dv)``, the dtype of ``q``. A query with no key gives zeros.
    """
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    lq, lk = q.shape[-2], k.shape[-2]
    q4, k4, v4 = (t.expand(*batch, *t.shape[-2:]).reshape(-1, 1, *t.shape[-2:]) for t in (q, k, v))
    mask = _block_mask(pattern, params, lq, lk)
    key = (pattern, tuple(q4.shape), v4.shape[-1], q.dtype)
    start = time.perf_counter()
    try:
        out = _compiled()(q4.contiguous(), k4.contiguous(), v4.contiguous(), block_mask=mask,
                          scale=scale)
    except torch._dynamo.exc.FailOnRecompileLimitHit:
        raise RuntimeError(f"backend 'flex' has compiled its limit of {RECOMPILE_LIMIT} kernels "
                           f"(one per shape, dtype and pattern) in this process; use "
                           f"backend='plain', or raise attnlib.flex.RECOMPILE_LIMIT before the "
                           f"first flex call") from None
    if key not in _first_calls:
        _first_calls[key] = time.perf_counter() - start
    return out.reshape(*batch, lq, v.shape[-1])


def first_call_seconds() -> dict[tuple, float]:
    """Wall time of the first call of each ``(pattern, shape, dv, dtype)`` in this
    process: the compilation plus one run. Later calls of the same key reuse the kernel."""
    return dict(_first_calls)


# --- the patterns, as functions of positions (i: query, j: key) -------------------------

def window_mask_mod(window: int, causal: bool, dilation: int):
    """``j = i + m * dilation`` with ``|m| <= window`` (``m <= 0`` if causal):
    :func:`attnlib.local_mask`."""
    hi = torch.tensor(window * dilation)
    lo = torch.tensor(0 if check_flag(causal, "causal") else -window * dilation)
    step = torch.tensor(dilation)

    def mask_mod(b, h, i, j):
        off = i - j
        return (off >= lo) & (off <= hi) & (off % step == 0)
    return mask_mod


def longformer_mask_mod(window: int, global_index: tuple[int, ...], n: int):
    """``|i - j| <= window`` or ``i`` or ``j`` global: :func:`attnlib.longformer_mask`."""
    w = torch.tensor(window)
    is_global = torch.zeros(n, dtype=torch.bool)
    is_global[list(global_index)] = True

    def mask_mod(b, h, i, j):
        return ((i - j).abs() <= w) | is_global[i] | is_global[j]
    return mask_mod


def layout_mask_mod(layout: tuple[tuple[bool, ...], ...], block_size: int):
    """``layout[i // block_size, j // block_size]``: :func:`attnlib.layout_to_mask`."""
    table = torch.tensor(layout, dtype=torch.bool)
    size = torch.tensor(block_size)

    def mask_mod(b, h, i, j):
        return table[i // size, j // size]
    return mask_mod


def strided_mask_mod(stride: int, causal: bool):
    """``|i - j| <= stride`` or ``i - j`` a multiple of ``stride`` (``j <= i`` if causal):
    :func:`attnlib.strided_mask`."""
    l = torch.tensor(stride)
    lo = torch.tensor(0 if check_flag(causal, "causal") else -(2 ** 62))

    def mask_mod(b, h, i, j):
        off = i - j
        return (off >= lo) & ((off.abs() <= l) | (off % l == 0))
    return mask_mod


_MASK_MODS = {"window": window_mask_mod, "longformer": longformer_mask_mod,
              "layout": layout_mask_mod, "strided": strided_mask_mod}
