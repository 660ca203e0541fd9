"""The Transformer encoder block: attention and a feed-forward layer, each with a residual and LayerNorm.

Post-LN (the original Transformer and BERT) normalises after each residual sum;
pre-LN normalises the input of each sub-layer and leaves the residual stream alone::

    post-LN:  x = norm1(x + attn(x));        x = norm2(x + ff(x))
    pre-LN:   x = x + attn(norm1(x));        x = x + ff(norm2(x))

    ff(x) = linear2(activation(linear1(x)))      # E -> dim_feedforward -> E

Parameter names follow ``torch.nn.TransformerEncoderLayer``, whose weights
``from_torch`` loads.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ._common import check_count, check_dropout, check_flag, check_positive, check_tensor
from .multihead import MultiHeadAttention

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}


class TransformerEncoderLayer(nn.Module):
    """One encoder block, batch first: ``(B, L, E)`` -> ``(B, L, E)``.

    Args:
        d_model: the model width ``E``.
        n_heads: the number of attention heads; must divide ``d_model``.
        dim_feedforward: hidden size of the feed-forward layer (default ``4 * d_model``).
        dropout: dropout after attention, inside and after the feed-forward layer,
            and on the attention weights (training only).
        activation: ``"gelu"`` (exact, erf-based, as in BERT) or ``"relu"``.
        norm_first: True for pre-LN, False for post-LN.
        layer_norm_eps: the epsilon of both LayerNorms (BERT uses 1e-12).
        bias: biases in the linear layers and the LayerNorms.
    """

    def __init__(self, d_model: int, n_heads: int, dim_feedforward: int | None = None, *,
                 dropout: float = 0.0, activation: str = "gelu", norm_first: bool = False,
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
        self.linear1 = nn.Linear(d_model, dim_ff, bias=bias)
        self.linear2 = nn.Linear(dim_ff, d_model, bias=bias)
        self.norm1 = nn.LayerNorm(d_model, eps=eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=eps, bias=bias)
        self.dropout = nn.Dropout(p)     # inside the feed-forward layer
        self.dropout1 = nn.Dropout(p)    # on the attention output
        self.dropout2 = nn.Dropout(p)    # on the feed-forward output

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, norm_first={self.norm_first}"

    def forward(self, x, *, mask=None, causal=False, need_weights=False):
        """Apply the block to ``x`` of shape ``(B, L, E)``.

        ``mask`` (boolean, True = may attend, broadcastable to ``(B, H, L, L)``)
        and ``causal`` go to the attention. Returns ``(B, L, E)``, or
        ``(out, weights)`` with the attention weights ``(B, H, L, L)`` if
        ``need_weights``.
        """
        check_tensor(x, "x")
        h = self.norm1(x) if self.norm_first else x
        a = self.self_attn(h, mask=mask, causal=causal, need_weights=need_weights)
        a, weights = a if need_weights else (a, None)
        if self.norm_first:
            x = x + self.dropout1(a)                       # pre-LN: the residual stream
            x = x + self.dropout2(self.feed_forward(self.norm2(x)))  # is never normalised
        else:
            x = self.norm1(x + self.dropout1(a))           # post-LN: normalise each sum
            x = self.norm2(x + self.dropout2(self.feed_forward(x)))
        return (x, weights) if need_weights else x

    def feed_forward(self, x):
        """The position-wise feed-forward layer: ``(..., E)`` -> ``(..., E)``."""
        return self.linear2(self.dropout(ACTIVATIONS[self.activation](self.linear1(x))))

    # The torch layer ``from_torch`` copies, and the names of its attention sub-layers.
    TORCH_LAYER = nn.TransformerEncoderLayer
    ATTENTIONS = ("self_attn",)

    @classmethod
    def from_torch(cls, layer: nn.Module) -> "TransformerEncoderLayer":
        """A copy of the torch layer ``layer`` (gelu or relu activation): a
        ``torch.nn.TransformerEncoderLayer`` here, ``cls.TORCH_LAYER`` in a subclass.

        Works for ``batch_first`` either way; the result is always batch first.
        """
        if not isinstance(layer, cls.TORCH_LAYER):
            raise TypeError(f"layer must be a torch.nn.{cls.TORCH_LAYER.__name__}, "
                            f"got {type(layer).__name__}")
        act = _activation_name(layer.activation)
        if act is None:
            raise ValueError(f"layer uses the activation {layer.activation!r}; only "
                             "'relu' and 'gelu' are supported")
        attn = layer.self_attn
        new = cls(attn.embed_dim, attn.num_heads, layer.linear1.out_features,
                  dropout=layer.dropout.p, activation=act, norm_first=layer.norm_first,
                  layer_norm_eps=layer.norm1.eps, bias=layer.linear1.bias is not None)
        new.to(device=attn.in_proj_weight.device, dtype=attn.in_proj_weight.dtype)
        for name in cls.ATTENTIONS:
            setattr(new, name, MultiHeadAttention.from_torch(getattr(layer, name)))
        prefixes = tuple(f"{name}." for name in cls.ATTENTIONS)
        state = {k: v for k, v in layer.state_dict().items() if not k.startswith(prefixes)}
        new.load_state_dict({**new.state_dict(), **state})
        return new.train(layer.training)


def _activation_name(activation) -> str | None:
    """``"relu"`` or ``"gelu"`` for a torch layer's activation (function or module), else None."""
    if activation is F.relu or isinstance(activation, nn.ReLU):
        return "relu"
    if activation is F.gelu or (isinstance(activation, nn.GELU) and activation.approximate == "none"):
        return "gelu"
    return None
