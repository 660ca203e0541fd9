"""Softmax and log-softmax over one axis, with boolean masks and temperature.

Both functions accept a numpy array or a torch tensor of any shape ``(...)`` and
return the same type and shape. The numpy path is written out step by step (it is
the reference the book derives); the torch path uses torch's fused kernels and is
differentiable. Both agree, and the tests hold them to it.
"""

from __future__ import annotations

import numpy as np
import torch

from ._common import array_namespace, as_float_array, as_mask, check_axis, check_positive, row_max


def _masked_logits(x, axis, mask, temperature):
    """Validate the arguments; return ``(z, axis)`` with ``z = x / temperature``
    and ``-inf`` wherever ``mask`` is False."""
    z = as_float_array(x, "x")
    axis = check_axis(axis, z.ndim)
    if z.shape[axis] == 0:
        raise ValueError(f"x of shape {tuple(z.shape)} has no entries along axis {axis}")
    z = z / check_positive(temperature, "temperature")
    if mask is not None:
        xp = array_namespace(z)
        z = xp.where(as_mask(mask, z), z, -xp.inf)
    return z, axis


def _shifted_numpy(z, axis):
    """Return ``(z - m, s)`` for the row maximum ``m`` and ``s = sum(exp(z - m))``.

    A row whose entries are all ``-inf`` (fully masked) gets ``m = 0``, so its
    exponentials are exactly 0 and ``s = 0``, instead of ``-inf - -inf = NaN``.
    """
    shifted = z - row_max(z, axis)
    return shifted, np.exp(shifted).sum(axis=axis, keepdims=True)


def _torch_rows(fn, z, axis, empty_value):
    """Apply torch's ``fn`` (softmax or log_softmax) along ``axis`` of ``z``.

    Rows that are entirely ``-inf`` would give NaN, also in the gradient; they
    are computed on zeros instead and then set to ``empty_value``, so that both
    the values and the gradients of a fully masked row stay finite.
    """
    keep = z.amax(dim=axis, keepdim=True) > -torch.inf
    out = fn(torch.where(keep, z, 0.0), dim=axis)
    return torch.where(keep, out, empty_value)


def softmax(x, axis=-1, *, mask=None, temperature=1.0):
    """Softmax of ``x / temperature`` along ``axis``.

    Args:
        x: scores, numpy array or torch tensor of shape ``(...)``.
        axis: the axis to normalise over (default: the last).
        mask: optional boolean array, broadcastable to ``x.shape``;
            True = keep, False = give probability 0.
        temperature: a number > 0; large values flatten the distribution,
            small values sharpen it towards the arg-max.

    Returns:
        Probabilities of the same type and shape as ``x``, summing to 1 along
        ``axis``. A row with every entry masked is all zeros, never NaN.
        Subtracting the row maximum first keeps results finite for any finite
        logits (e.g. ±1e4 in float32).
    """
    z, axis = _masked_logits(x, axis, mask, temperature)
    if isinstance(z, torch.Tensor):
        return _torch_rows(torch.softmax, z, axis, 0.0)
    shifted, s = _shifted_numpy(z, axis)
    return np.exp(shifted) / np.where(s > 0, s, 1.0)


def log_softmax(x, axis=-1, *, mask=None, temperature=1.0):
    """Logarithm of :func:`softmax`, computed as ``z - logsumexp(z)``.

    Takes the same arguments as :func:`softmax` and returns an array of the same
    type and shape as ``x``. Masked entries, and every entry of a fully masked
    row, are ``-inf`` (the log of probability 0), so ``exp(log_softmax(x))``
    equals ``softmax(x)`` everywhere.
    """
    z, axis = _masked_logits(x, axis, mask, temperature)
    if isinstance(z, torch.Tensor):
        return _torch_rows(torch.log_softmax, z, axis, -torch.inf)
    shifted, s = _shifted_numpy(z, axis)
    return np.where(s > 0, shifted - np.log(np.where(s > 0, s, 1.0)), -np.inf)
