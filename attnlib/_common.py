"""Internals shared by attnlib's modules: input checks and array helpers.

Every public function validates its arguments here, so that bad input fails with
a message naming the argument, what it got and what it needs, instead of being
silently broadcast into a wrong answer.

Two backends, one pattern. An algorithm is written once for numpy and torch: it
picks the namespace once, ``xp = array_namespace(x)``, for what both spell
alike (``xp.where``, ``xp.exp``, ``xp.maximum``, ...), and calls a helper of
this module for what they spell differently (padding, blocking, gathering,
concatenating, the row maximum). Each such helper writes the torch and the numpy
spelling side by side. A torch-only fast path is a function of its own, next to
the plain path it must agree with.
"""

from __future__ import annotations

import math
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


def check_tensor(x, name: str):
    """Return ``x``, checked to be a torch tensor (for the torch-only modules)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(x).__name__}")
    return x


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


def check_dropout(p, name: str = "dropout") -> float:
    """Return the probability ``p`` as a float, checked to lie in ``[0, 1)``."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1), got {type(p).__name__}")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {p}")
    return float(p)


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


def check_features(x, name: str = "q") -> None:
    """Check that ``x (..., L, d)`` (queries by default) has a feature size ``d >= 1``."""
    if x.shape[-1] == 0:
        raise ValueError(f"{name} of shape {tuple(x.shape)} needs a feature size d >= 1 "
                         "(last dimension)")


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
    check_features(q)
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


def default_scale(scale, d: int) -> float:
    """The factor applied to ``q @ k^T``: ``scale`` checked, or ``1 / sqrt(d)`` if None."""
    return 1.0 / math.sqrt(d) if scale is None else check_real(scale, "scale")


def self_attention_inputs(q, k, v, scale):
    """Check self-attention inputs ``q (..., n, d)``, ``k (..., n, d)``, ``v (..., n, dv)``;
    return ``(q, k, v, n, scale)`` with the scale defaulted (see :func:`default_scale`)."""
    q, k, v, _ = as_qkv(q, k, v)
    n = self_attention_length(q, k)
    return q, k, v, n, default_scale(scale, q.shape[-1])


def as_layout(layout) -> np.ndarray:
    """``layout`` as a 2-D numpy bool array of shape ``(nb_q, nb_k)`` (True = the query
    block attends the key block)."""
    if isinstance(layout, torch.Tensor):
        layout = layout.detach().cpu().numpy()
    arr = np.asarray(layout)
    if arr.dtype != np.bool_:
        raise TypeError(f"layout must be boolean (True = attend), got dtype {arr.dtype}")
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"layout must have shape (nb_q, nb_k) with both >= 1, got shape {arr.shape}")
    return arr


# --- array helpers: numpy and torch spellings side by side -----------------------------

def array_namespace(x):
    """``torch`` for a torch tensor, else ``numpy``: for what both spell alike."""
    return torch if isinstance(x, torch.Tensor) else np


def broadcast_to(x, shape):
    """``x`` broadcast to ``shape``, a view (no copy)."""
    if isinstance(x, torch.Tensor):
        return x.expand(*shape)
    return np.broadcast_to(x, shape)


def pad_seq(x, before: int, after: int):
    """Zeros before and after the sequence axis (-2): ``(..., n, d)`` -> ``(..., before + n + after, d)``."""
    if isinstance(x, torch.Tensor):
        return torch.nn.functional.pad(x, (0, 0, before, after))
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(before, after), (0, 0)])


def blocks(x, b: int):
    """Cut the sequence axis into blocks, a view: ``(..., nb * b, d)`` -> ``(..., nb, b, d)``."""
    return x.reshape(*x.shape[:-2], x.shape[-2] // b, b, x.shape[-1])


def take(x, index: np.ndarray, axis: int):
    """``x`` indexed along ``axis`` (negative) by the int array ``index``."""
    if isinstance(x, torch.Tensor):
        return x.index_select(x.ndim + axis, torch.as_tensor(index, device=x.device))
    return np.take(x, index, axis=axis)


def concat(parts, axis: int):
    """The arrays ``parts`` joined along ``axis``."""
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts, dim=axis)
    return np.concatenate(parts, axis=axis)


def append_keys(xb, xe):
    """Append the keys ``xe (..., g, d)`` to every block of ``xb (..., nb, size, d)``:
    ``(..., nb, size + g, d)``."""
    if isinstance(xb, torch.Tensor):
        xe = xe.unsqueeze(-3).expand(*xb.shape[:-2], *xe.shape[-2:])
    else:
        xe = np.broadcast_to(xe[..., None, :, :], (*xb.shape[:-2], *xe.shape[-2:]))
    return concat([xb, xe], -2)


def zero_if_empty(m):
    """A row maximum with the ``-inf`` of an empty (fully masked) row replaced by 0, so that
    ``exp(s - m)`` gives exact zeros there instead of ``-inf - -inf = NaN``."""
    xp = array_namespace(m)
    return xp.where(xp.isfinite(m), m, 0.0)


def row_max(s, axis: int = -1):
    """The maximum along ``axis`` (kept as size 1), 0 for an empty row: see :func:`zero_if_empty`."""
    return zero_if_empty(array_namespace(s).amax(s, axis, keepdims=True))


def as_token_ids(ids, vocab_size: int | None = None, name: str = "input_ids"):
    """Return ``ids``, checked to be an int64 torch tensor of shape ``(B, L)`` with
    ``L >= 1`` and, given ``vocab_size``, values in ``[0, vocab_size)``."""
    if check_tensor(ids, name).dtype != torch.long:
        raise TypeError(f"{name} must be an int64 tensor of shape (B, L), got dtype {ids.dtype}")
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"{name} must have shape (B, L) with L >= 1, got shape {tuple(ids.shape)}")
    if vocab_size is not None and ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{name} must lie in [0, {vocab_size}), got values in "
                         f"[{ids.min().item()}, {ids.max().item()}]")
    return ids
