"""Internals shared by attnlib's modules: input checks and array helpers.

Every public function validates its arguments here, so that bad input fails with
a message naming the argument, what it got and what it needs, instead of being
silently broadcast into a wrong answer.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch


def as_float_array(x, name: str):
    """Return ``x`` as a floating numpy array or torch tensor.

    Torch tensors stay tensors and everything else becomes a numpy array, so a
    function returns the type it was given. Integer input is promoted to float
    (float64 for numpy, torch's default dtype for torch); booleans, complex
    numbers and non-numeric objects raise ``TypeError``.
    """
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"{name} must hold real numbers, got a tensor of dtype {x.dtype}")
        return x if x.is_floating_point() else x.to(torch.get_default_dtype())
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a numpy array or torch tensor of real numbers, "
                        f"got {type(x).__name__}") from err
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got {type(x).__name__} "
                        f"of dtype {arr.dtype}")
    return arr if arr.dtype.kind == "f" else arr.astype(np.float64)


def as_mask(mask, like, shape=None, name: str = "mask"):
    """Return the boolean ``mask`` in the backend (and device) of the array ``like``.

    ``mask`` must be boolean (True = may attend / keep) and broadcastable to
    ``shape`` (default ``like.shape``) without changing that shape.
    """
    is_tensor = isinstance(mask, torch.Tensor)
    dtype = mask.dtype if is_tensor else np.asarray(mask).dtype
    if dtype not in (torch.bool, np.bool_):
        raise TypeError(f"{name} must be boolean (True = keep), got dtype {dtype}")
    if isinstance(like, torch.Tensor):
        mask = torch.as_tensor(mask, device=like.device)
    else:
        mask = mask.cpu().numpy() if is_tensor else np.asarray(mask)
    shape = tuple(like.shape if shape is None else shape)
    try:
        fits = np.broadcast_shapes(tuple(mask.shape), shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{name} of shape {tuple(mask.shape)} cannot broadcast to "
                         f"shape {shape}")
    return mask


def check_flag(value, name: str) -> bool:
    """Return ``value`` as a bool; anything but True/False raises ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return bool(value)


def ceil_div(n: int, b: int) -> int:
    """``ceil(n / b)`` for whole numbers: the number of blocks of size ``b`` covering ``n``."""
    return -(-n // b)


def check_axis(axis, ndim: int, name: str = "axis") -> int:
    """Return ``axis`` as a non-negative index into ``ndim`` dimensions."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an input with {ndim} dimension(s)")
    return int(axis) % ndim


def check_positive(value, name: str) -> float:
    """Return ``value`` as a float, checked to be a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def check_real(value, name: str) -> float:
    """Return ``value`` as a float, checked to be a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def check_count(value, name: str, minimum: int = 0) -> int:
    """Return ``value`` as an int, checked to be a whole number >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def as_qkv(q, k, v):
    """Check attention inputs; return ``(q, k, v, batch_shape)``.

    Shapes: ``q (..., Lq, d)``, ``k (..., Lk, d)``, ``v (..., Lk, dv)``, with
    leading dimensions that broadcast together into ``batch_shape``. All three
    must be numpy arrays or all torch tensors (of one dtype).
    """
    q, k, v = (as_float_array(a, n) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    kinds = {isinstance(a, torch.Tensor) for a in (q, k, v)}
    if len(kinds) > 1:
        raise TypeError("q, k and v must be all numpy arrays or all torch tensors")
    if True in kinds and len({a.dtype for a in (q, k, v)}) > 1:
        raise TypeError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    for a, name, dims in ((q, "q", "(..., Lq, d)"), (k, "k", "(..., Lk, d)"),
                          (v, "v", "(..., Lk, dv)")):
        if a.ndim < 2:
            raise ValueError(f"{name} must have shape {dims}, got shape {tuple(a.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q of shape {tuple(q.shape)} and k of shape {tuple(k.shape)} must "
                         f"share the feature size d (last dimension): {q.shape[-1]} != {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k of shape {tuple(k.shape)} and v of shape {tuple(v.shape)} must "
                         f"have the same length Lk: {k.shape[-2]} != {v.shape[-2]}")
    try:
        batch = np.broadcast_shapes(*(tuple(a.shape[:-2]) for a in (q, k, v)))
    except ValueError:
        raise ValueError(f"the leading (batch) dimensions of q {tuple(q.shape)}, k "
                         f"{tuple(k.shape)} and v {tuple(v.shape)} do not broadcast") from None
    return q, k, v, batch


def self_attention_length(q, k) -> int:
    """The sequence length ``n`` of self-attention inputs ``q (..., n, d)`` and
    ``k (..., n, d)``: one key per query position, at least one position."""
    n = q.shape[-2]
    if k.shape[-2] != n:
        raise ValueError(f"q of shape {tuple(q.shape)} and k of shape {tuple(k.shape)} must "
                         f"have the same length n (one key per query position): {n} != {k.shape[-2]}")
    if n == 0:
        raise ValueError(f"q of shape {tuple(q.shape)} has no positions: n must be >= 1")
    return n
