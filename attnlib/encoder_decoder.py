"""The decoder block of an encoder-decoder Transformer: self-attention, cross-attention, feed-forward.

The decoder reads its own tokens through masked self-attention and the encoder's
output (the *memory*) through cross-attention: queries from the decoder, keys and
values from the memory, so every target position may look at every source position::

    post-LN:  x = norm1(x + self_attn(x, causal));  x = norm2(x + cross_attn(x, memory))
              x = norm3(x + ff(x))
    pre-LN:   x = x + self_attn(norm1(x), causal);  x = x + cross_attn(norm2(x), memory)
              x = x + ff(norm3(x))

Shapes: ``x (B, Lt, E)`` (target), ``memory (B, Ls, E)`` (source). Parameter names
follow ``torch.nn.TransformerDecoderLayer``, whose weights ``from_torch`` loads.
"""

from __future__ import annotations

from torch import nn

from ._common import check_tensor
from .encoder import TransformerEncoderLayer
from .multihead import MultiHeadAttention


class TransformerDecoderLayer(TransformerEncoderLayer):
    """One decoder block with cross-attention, batch first: the encoder block of
    :class:`attnlib.TransformerEncoderLayer` plus a cross-attention sub-layer.

    Args:
        d_model: the model width ``E``.
        n_heads: the number of heads of both attentions; must divide ``d_model``.
        dim_feedforward: hidden size of the feed-forward layer (default ``4 * d_model``).
        dropout: dropout after each sub-layer, inside the feed-forward layer and on the
            attention weights (training only).
        activation: ``"relu"`` or ``"gelu"``.
        norm_first: True for pre-LN, False for post-LN (the original Transformer).
        layer_norm_eps: the epsilon of the three LayerNorms.
        bias: biases in the linear layers and the LayerNorms.
    """

    TORCH_LAYER = nn.TransformerDecoderLayer  # what from_torch copies
    ATTENTIONS = ("self_attn", "multihead_attn")

    def __init__(self, d_model: int, n_heads: int, dim_feedforward: int | None = None, *,
                 dropout: float = 0.0, activation: str = "relu", norm_first: bool = False,
                 layer_norm_eps: float = 1e-5, bias: bool = True):
        # the encoder block's self-attention, feed-forward layer, norm1, norm2 and dropouts
        super().__init__(d_model, n_heads, dim_feedforward, dropout=dropout,
                         activation=activation, norm_first=norm_first,
                         layer_norm_eps=layer_norm_eps, bias=bias)
        self.multihead_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout3 = nn.Dropout(self.dropout.p)
        # dropout1: self-attention output; dropout2: cross-attention output;
        # dropout3: feed-forward output

    def forward(self, x, memory, *, causal=True, mask=None, memory_mask=None, need_weights=False):
        """Apply the block to the target ``x (B, Lt, E)`` given the encoder output ``memory (B, Ls, E)``.

        Args:
            causal: target position ``i`` sees target positions ``j <= i`` only.
            mask: boolean, broadcastable to ``(B, H, Lt, Lt)``, True = may attend
                (combined with ``causal``).
            memory_mask: boolean, broadcastable to ``(B, H, Lt, Ls)``; a source padding
                mask ``keep (B, Ls)`` is passed as ``keep[:, None, None, :]``.
            need_weights: also return the cross-attention weights ``(B, H, Lt, Ls)``.

        Returns:
            ``(B, Lt, E)``, or ``(out, cross_weights)``.
        """
        check_tensor(x, "x")
        check_tensor(memory, "memory")
        h = self.norm1(x) if self.norm_first else x
        a = self.self_attn(h, mask=mask, causal=causal)
        x = x + self.dropout1(a) if self.norm_first else self.norm1(x + self.dropout1(a))
        h = self.norm2(x) if self.norm_first else x
        c = self.multihead_attn(h, memory, mask=memory_mask, need_weights=need_weights)
        c, weights = c if need_weights else (c, None)
        x = x + self.dropout2(c) if self.norm_first else self.norm2(x + self.dropout2(c))
        if self.norm_first:
            x = x + self.dropout3(self.feed_forward(self.norm3(x)))
        else:
            x = self.norm3(x + self.dropout3(self.feed_forward(x)))
        return (x, weights) if need_weights else x
