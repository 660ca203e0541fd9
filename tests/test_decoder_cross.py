"""attnlib.TransformerDecoderLayer (self-attention, cross-attention, feed-forward)
against torch.nn.TransformerDecoderLayer, both norm placements and activations.

Tolerances: 1e-5 in float32, 1e-12 in float64, with random weights, a causal
target mask and a source padding mask.
"""

import pytest
import torch
from torch import nn

from attnlib import TransformerDecoderLayer, TransformerEncoderLayer
from tests.arrays import randomized


def torch_layer(norm_first, activation, dtype, seed=0):
    layer = nn.TransformerDecoderLayer(16, 4, 24, dropout=0.0, batch_first=True,
                                       norm_first=norm_first, activation=activation).to(dtype)
    return randomized(layer, 0.3, seed)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_equals_torch_decoder_layer(norm_first, activation, dtype, tol):
    ref = torch_layer(norm_first, activation, dtype)
    ours = TransformerDecoderLayer.from_torch(ref)
    g = torch.Generator().manual_seed(1)
    x, memory = torch.randn(3, 7, 16, generator=g, dtype=dtype), torch.randn(3, 5, 16, generator=g, dtype=dtype)
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        want = ref(x, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(7, dtype=dtype),
                   tgt_is_causal=True, memory_key_padding_mask=~keep)   # torch: True = masked
        got = ours(x, memory, causal=True, memory_mask=keep[:, None, None, :])
        unmasked = ours(x, memory, causal=False)
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)
    assert not torch.allclose(unmasked, want, atol=1e-3)      # the masks matter for the comparison


def test_cross_attention_weights_and_gradients():
    ref = torch_layer(True, "relu", torch.float64)
    ours = TransformerDecoderLayer.from_torch(ref)
    x, memory = torch.randn(2, 4, 16, dtype=torch.float64), torch.randn(2, 6, 16, dtype=torch.float64)
    out, weights = ours(x, memory, need_weights=True)
    assert weights.shape == (2, 4, 4, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 4, dtype=torch.float64))
    memory.requires_grad_(True)
    ours(x, memory).sum().backward()
    assert memory.grad.abs().sum() > 0          # the decoder really reads the encoder's output


def test_bad_input():
    with pytest.raises(ValueError, match="activation must be one of"):
        TransformerDecoderLayer(16, 4, activation="tanh")
    with pytest.raises(TypeError, match="layer must be a torch.nn.TransformerDecoderLayer"):
        TransformerDecoderLayer.from_torch(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="layer must be a torch.nn.TransformerDecoderLayer"):
        TransformerDecoderLayer.from_torch(nn.TransformerEncoderLayer(16, 4))
    with pytest.raises(ValueError, match="d_model=16 is not divisible by n_heads=3"):
        TransformerDecoderLayer(16, 3)


@pytest.mark.parametrize("activation", [nn.ReLU(), nn.GELU()])
def test_activation_given_as_a_module(activation):
    ref = torch_layer(False, activation, torch.float64)
    ours = TransformerDecoderLayer.from_torch(ref)
    assert ours.activation == type(activation).__name__.lower()
    x, memory = torch.randn(2, 4, 16, dtype=torch.float64), torch.randn(2, 5, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, memory, causal=False), ref(x, memory),
                                   atol=1e-12, rtol=1e-12)


def test_an_approximate_gelu_is_refused():
    # torch's tanh approximation is not the exact GELU this layer computes
    for layer, cls in [(nn.TransformerDecoderLayer(16, 4, activation=nn.GELU("tanh")),
                        TransformerDecoderLayer),
                       (nn.TransformerEncoderLayer(16, 4, activation=nn.GELU("tanh")),
                        TransformerEncoderLayer)]:
        with pytest.raises(ValueError, match="only 'relu' and 'gelu' are supported"):
            cls.from_torch(layer)
