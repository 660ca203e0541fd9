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

from ._common import check_count, check_dropout, check_flag, check_positive, check_tensor
from .encoder import ACTIVATIONS
from .multihead import MultiHeadAttention


class TransformerDecoderLayer(nn.Module):
    """One decoder block with cross-attention, batch first.

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

    def __init__(self, d_model: int, n_heads: int, dim_feedforward: int | None = None, *,
                 dropout: float = 0.0, activation: str = "relu", norm_first: bool = False,
                 layer_norm_eps: float = 1e-5, bias: bool = True):
        super().__init__()
        d_model = check_count(d_model, "d_model", 1)
        dim_ff = 4 * d_model if dim_feedforward is None else check_count(
            dim_feedforward, "dim_feedforward", 1)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        p = check_dropout(dropout)
        eps = check_positive(layer_norm_eps, "layer_norm_eps")
        self.activation, self.norm_first = activation, check_flag(norm_first, "norm_first")
        self.self_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=p)
        self.multihead_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=p)  # cross
        self.linear1 = nn.Linear(d_model, dim_ff, bias=bias)
        self.linear2 = nn.Linear(dim_ff, d_model, bias=bias)
        self.norm1 = nn.LayerNorm(d_model, eps=eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=eps, bias=bias)
        self.norm3 = nn.LayerNorm(d_model, eps=eps, bias=bias)
        self.dropout = nn.Dropout(p)     # inside the feed-forward layer
        self.dropout1 = nn.Dropout(p)    # on the self-attention output
        self.dropout2 = nn.Dropout(p)    # on the cross-attention output
        self.dropout3 = nn.Dropout(p)    # on the feed-forward output

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, norm_first={self.norm_first}"

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

    def feed_forward(self, x):
        """The position-wise feed-forward layer: ``(..., E)`` -> ``(..., E)``."""
        return self.linear2(self.dropout(ACTIVATIONS[self.activation](self.linear1(x))))

    @classmethod
    def from_torch(cls, layer: nn.TransformerDecoderLayer) -> "TransformerDecoderLayer":
        """A copy of ``torch.nn.TransformerDecoderLayer`` ``layer`` (relu or gelu activation).

        Works for ``batch_first`` either way; the result is always batch first.
        """
        if not isinstance(layer, nn.TransformerDecoderLayer):
            raise TypeError(f"layer must be a torch.nn.TransformerDecoderLayer, "
                            f"got {type(layer).__name__}")
        act = {nn.functional.relu: "relu", nn.functional.gelu: "gelu"}.get(layer.activation)
        if act is None:
            raise ValueError(f"layer uses the activation {layer.activation!r}; only "
                             "'relu' and 'gelu' are supported")
        attn = layer.self_attn
        new = cls(attn.embed_dim, attn.num_heads, layer.linear1.out_features,
                  dropout=layer.dropout.p, activation=act, norm_first=layer.norm_first,
                  layer_norm_eps=layer.norm1.eps, bias=layer.linear1.bias is not None)
        new.to(device=attn.in_proj_weight.device, dtype=attn.in_proj_weight.dtype)
        new.self_attn = MultiHeadAttention.from_torch(attn)
        new.multihead_attn = MultiHeadAttention.from_torch(layer.multihead_attn)
        state = {k: v for k, v in layer.state_dict().items()
                 if not k.startswith(("self_attn.", "multihead_attn."))}
        new.load_state_dict({**new.state_dict(), **state})
        return new.train(layer.training)
