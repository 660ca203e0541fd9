"""Multi-head attention as a torch module, built on ``attnlib.scaled_dot_product_attention``.

Reference semantics, for inputs of shape ``(B, L, E)`` and ``H`` heads of size
``d = E / H``::

    q, k, v = x W_q^T + b_q, x W_k^T + b_k, x W_v^T + b_v    # (B, L, E) each
    q, k, v = split_heads(q), split_heads(k), split_heads(v)  # (B, H, L, d): the FEATURES are split
    o = scaled_dot_product_attention(q, k, v, mask=mask)      # (B, H, Lq, d): every head sees all keys
    out = merge_heads(o) W_o^T + b_o                          # (B, Lq, E)

Masks follow attnlib: boolean, True = may attend, broadcastable to ``(B, H, Lq, Lk)``.
(``torch.nn.MultiheadAttention`` uses the opposite convention for its boolean masks.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import as_mask, check_count, check_dropout, check_flag, check_tensor
from .attention import attention_weights, scaled_dot_product_attention


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Split the feature dimension into heads: ``(B, L, E)`` -> ``(B, H, L, E / H)``.

    Head ``h`` gets features ``h * d : (h + 1) * d`` of every position; the
    sequence dimension is not split.
    """
    b, length, e = x.shape
    return x.reshape(b, length, n_heads, e // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Concatenate the heads again: ``(B, H, L, d)`` -> ``(B, L, H * d)``."""
    b, h, length, d = x.shape
    return x.transpose(1, 2).reshape(b, length, h * d)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, batch first.

    Args:
        d_model: the model width ``E`` (input and output feature size).
        n_heads: the number of heads ``H``; must divide ``d_model``. Each head
            works on ``d = E / H`` features of every position.
        bias: add biases to the four projections (like torch's ``bias=True``).
        dropout: dropout probability on the attention weights (training only).

    Parameters: ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj``, each an
    ``nn.Linear(E, E)``: ``4 E^2 + 4 E`` numbers, whatever ``H`` is.
    """

    def __init__(self, d_model: int, n_heads: int, *, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        d_model = check_count(d_model, "d_model", 1)
        n_heads = check_count(n_heads, "n_heads", 1)
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}: "
                             "every head needs the same number of features d_model / n_heads")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.dropout = check_dropout(dropout)
        bias = check_flag(bias, "bias")
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, "
                f"bias={self.q_proj.bias is not None}, dropout={self.dropout}")

    def forward(self, query, key=None, value=None, *, mask=None, causal=False,
                need_weights=False):
        """Attend from ``query`` to ``key`` / ``value``.

        Args:
            query: tensor of shape ``(B, Lq, E)``.
            key: tensor of shape ``(B, Lk, E)``; defaults to ``query`` (self-attention).
            value: tensor of shape ``(B, Lk, E)``; defaults to ``key``.
            mask: optional boolean tensor broadcastable to ``(B, H, Lq, Lk)``,
                True = may attend. A key padding mask ``keep`` of shape ``(B, Lk)``
                is passed as ``keep[:, None, None, :]``.
            causal: if True, query ``i`` attends only keys ``j <= i``.
            need_weights: also return the attention weights of every head.

        Returns:
            ``out`` of shape ``(B, Lq, E)``, or ``(out, weights)`` with per-head
            ``weights`` of shape ``(B, H, Lq, Lk)`` (their mean over dim 1 is what
            ``torch.nn.MultiheadAttention`` returns by default). A query with no
            key to attend to gets zero weights, never NaN.
        """
        causal, need_weights = check_flag(causal, "causal"), check_flag(need_weights, "need_weights")
        key = query if key is None else key
        value = key if value is None else value
        b, lq, lk = self._check_inputs(query, key, value)
        q = split_heads(self.q_proj(query), self.n_heads)    # (B, H, Lq, d)
        k = split_heads(self.k_proj(key), self.n_heads)      # (B, H, Lk, d)
        v = split_heads(self.v_proj(value), self.n_heads)    # (B, H, Lk, d)
        if mask is not None:
            mask = as_mask(mask, q, shape=(b, self.n_heads, lq, lk))
        p = self.dropout if self.training else 0.0
        if need_weights or p > 0.0:
            # plain path: weights first, so that dropout (and the caller) can see them
            weights = attention_weights(q, k, mask=mask, causal=causal)   # (B, H, Lq, Lk)
            o = (F.dropout(weights, p) if p > 0.0 else weights) @ v
        else:
            # fast path: torch's fused kernel inside attnlib's attention
            o = scaled_dot_product_attention(q, k, v, mask=mask, causal=causal)
        out = self.out_proj(merge_heads(o))                 # (B, Lq, E)
        return (out, weights) if need_weights else out

    def _check_inputs(self, query, key, value):
        """Check shapes and dtypes; return ``(B, Lq, Lk)``."""
        dtype = self.q_proj.weight.dtype
        for t, name, dims in ((query, "query", "(B, Lq, E)"), (key, "key", "(B, Lk, E)"),
                              (value, "value", "(B, Lk, E)")):
            check_tensor(t, name)
            if t.ndim != 3 or t.shape[-1] != self.d_model:
                raise ValueError(f"{name} must have shape {dims} with E = d_model = "
                                 f"{self.d_model}, got shape {tuple(t.shape)}")
            if t.dtype != dtype:
                raise TypeError(f"{name} has dtype {t.dtype} but the module's weights are "
                                f"{dtype}: convert one of them (e.g. module.to({t.dtype}))")
        if not query.shape[0] == key.shape[0] == value.shape[0]:
            raise ValueError(f"query {tuple(query.shape)}, key {tuple(key.shape)} and value "
                             f"{tuple(value.shape)} must have the same batch size B")
        if key.shape[1] != value.shape[1]:
            raise ValueError(f"key of shape {tuple(key.shape)} and value of shape "
                             f"{tuple(value.shape)} must have the same length Lk")
        return query.shape[0], query.shape[1], key.shape[1]

    @classmethod
    def from_torch(cls, m: nn.MultiheadAttention) -> "MultiHeadAttention":
        """A ``MultiHeadAttention`` with the weights (copied) of ``torch.nn.MultiheadAttention`` ``m``.

        torch packs the three input projections into ``in_proj_weight`` of shape
        ``(3E, E)`` (rows: query, key, value) and ``in_proj_bias`` ``(3E,)``.
        Works for ``batch_first`` either way (the weights do not depend on it);
        ``kdim``/``vdim`` different from ``E``, ``add_bias_kv`` and
        ``add_zero_attn`` are not supported.
        """
        if not isinstance(m, nn.MultiheadAttention):
            raise TypeError(f"m must be a torch.nn.MultiheadAttention, got {type(m).__name__}")
        if not m._qkv_same_embed_dim:
            raise ValueError(f"m has kdim={m.kdim}, vdim={m.vdim} different from "
                             f"embed_dim={m.embed_dim}; only kdim = vdim = embed_dim is supported")
        if m.bias_k is not None or m.add_zero_attn:
            raise ValueError("m uses add_bias_kv or add_zero_attn, which are not supported")
        bias = m.in_proj_bias is not None
        new = cls(m.embed_dim, m.num_heads, bias=bias, dropout=m.dropout)
        new.to(device=m.in_proj_weight.device, dtype=m.in_proj_weight.dtype)
        with torch.no_grad():
            for proj, w in zip((new.q_proj, new.k_proj, new.v_proj), m.in_proj_weight.chunk(3)):
                proj.weight.copy_(w)
            new.out_proj.weight.copy_(m.out_proj.weight)
            if bias:
                for proj, b in zip((new.q_proj, new.k_proj, new.v_proj), m.in_proj_bias.chunk(3)):
                    proj.bias.copy_(b)
                new.out_proj.bias.copy_(m.out_proj.bias)
        return new.train(m.training)
