"""Boolean attention masks: True = may attend, broadcastable to ``(..., Lq, Lk)``."""

from __future__ import annotations

import numpy as np
import torch

from ._common import check_count


def causal_mask(n_q: int, n_k: int | None = None) -> np.ndarray:
    """Causal mask of shape ``(n_q, n_k)``: query ``i`` may attend key ``j`` iff ``j <= i``.

    Aligned top-left like torch's ``is_causal=True``: with ``n_q != n_k`` query 0
    still sees key 0 only, and with ``n_q > n_k`` the queries ``i >= n_k`` see
    every key. ``n_k`` defaults to ``n_q``; either may be 0 (an empty mask).
    Returns a numpy array; attnlib converts it when the scores are torch tensors.
    """
    n_q = check_count(n_q, "n_q", 0)
    n_k = n_q if n_k is None else check_count(n_k, "n_k", 0)
    return np.tril(np.ones((n_q, n_k), dtype=bool))


def padding_mask(lengths, max_len: int):
    """Key padding mask of shape ``(B, max_len)``: True at positions ``< lengths[b]``.

    ``lengths`` is a 1-D integer numpy array, list or torch tensor of shape
    ``(B,)`` with ``0 <= lengths[b] <= max_len``; the mask has its type. To mask
    the keys of scores ``(B, Lq, Lk)``, use ``padding_mask(lengths, Lk)[:, None, :]``.
    """
    max_len = check_count(max_len, "max_len", 0)
    is_tensor = isinstance(lengths, torch.Tensor)
    arr = lengths.cpu().numpy() if is_tensor else np.asarray(lengths)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must be a 1-D array of integers of shape (B,), got "
                        f"shape {arr.shape} and dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > max_len):
        raise ValueError(f"lengths must lie in [0, max_len={max_len}], got {arr.tolist()}")
    if is_tensor:
        return torch.arange(max_len, device=lengths.device) < lengths[:, None]
    return np.arange(max_len) < arr[:, None]
