"""attnlib.TransformerEncoderLayer: equivalence with torch.nn.TransformerEncoderLayer.

Given the same random weights (biases and LayerNorm parameters included), post-LN
and pre-LN, GELU and ReLU, batch first or not, dropout 0 / eval mode: outputs
agree to 1e-12 in float64 and 1e-5 in float32, and so do the gradients.
torch's padding mask is True = padding; attnlib's is True = token.
"""

import pytest
import torch
from torch import nn

from attnlib import TransformerEncoderLayer, padding_mask
from tests.arrays import close, randomized, x_of


def torch_layer(norm_first, activation="gelu", e=16, h=4, ff=24, dtype=torch.float64,
                batch_first=True, bias=True, seed=0):
    layer = nn.TransformerEncoderLayer(e, h, ff, dropout=0.0, activation=activation,
                                       batch_first=batch_first, norm_first=norm_first,
                                       bias=bias, dtype=dtype)
    return randomized(layer, 0.4, seed)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_torch(norm_first, activation, dtype):
    ref = torch_layer(norm_first, activation, dtype=dtype)
    ours = TransformerEncoderLayer.from_torch(ref)
    assert ours.norm_first == norm_first and ours.activation == activation
    x = x_of(3, 7, 16, dtype=dtype)
    close(ours(x), ref(x), dtype)


@pytest.mark.parametrize("norm_first", [False, True])
def test_padding_mask_matches_torch(norm_first):
    ref = torch_layer(norm_first)
    ours = TransformerEncoderLayer.from_torch(ref)
    x = x_of(3, 6, 16)
    keep = padding_mask(torch.tensor([6, 2, 4]), 6)
    close(ours(x, mask=keep[:, None, None, :]), ref(x, src_key_padding_mask=~keep))


def test_padding_mask_float32_matches_torch():
    ref = torch_layer(False, dtype=torch.float32)
    ours = TransformerEncoderLayer.from_torch(ref)
    x = x_of(2, 5, 16, dtype=torch.float32)
    keep = padding_mask(torch.tensor([5, 3]), 5)
    close(ours(x, mask=keep[:, None, None, :]), ref(x, src_key_padding_mask=~keep), torch.float32)


@pytest.mark.parametrize("norm_first", [False, True])
def test_causal_matches_torch(norm_first):
    ref = torch_layer(norm_first)
    ours = TransformerEncoderLayer.from_torch(ref)
    x = x_of(2, 6, 16)
    future = nn.Transformer.generate_square_subsequent_mask(6, dtype=torch.float64)
    close(ours(x, causal=True), ref(x, src_mask=future, is_causal=True))


def test_sequence_first_torch_layer():
    ref = torch_layer(True, batch_first=False)
    ours = TransformerEncoderLayer.from_torch(ref)
    x = x_of(2, 5, 16)
    close(ours(x), ref(x.transpose(0, 1)).transpose(0, 1))


def test_without_bias_matches_torch():
    ref = torch_layer(False, bias=False)
    ours = TransformerEncoderLayer.from_torch(ref)
    assert ours.linear1.bias is None and ours.norm1.bias is None
    x = x_of(2, 5, 16)
    close(ours(x), ref(x))


@pytest.mark.parametrize("norm_first", [False, True])
def test_stack_matches_torch_encoder(norm_first):
    torch.manual_seed(0)
    layer = torch_layer(norm_first)
    ref = nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))         # make the three copies differ
    ours = [TransformerEncoderLayer.from_torch(lay) for lay in ref.layers]
    x = x_of(2, 5, 16)
    y = x
    for lay in ours:
        y = lay(y)
    close(y, ref(x))


@pytest.mark.parametrize("norm_first", [False, True])
def test_gradients_match_torch(norm_first):
    ref = torch_layer(norm_first)
    ours = TransformerEncoderLayer.from_torch(ref)
    x1 = x_of(2, 5, 16).requires_grad_(True)
    x2 = x1.detach().clone().requires_grad_(True)
    ref(x1).sin().sum().backward()
    ours(x2).sin().sum().backward()
    close(x2.grad, x1.grad)
    close(ours.linear1.weight.grad, ref.linear1.weight.grad)
    close(ours.norm2.bias.grad, ref.norm2.bias.grad)
    grad_in = torch.cat([ours.self_attn.q_proj.weight.grad, ours.self_attn.k_proj.weight.grad,
                         ours.self_attn.v_proj.weight.grad])
    close(grad_in, ref.self_attn.in_proj_weight.grad)


def test_post_ln_and_pre_ln_differ_and_follow_their_formulas():
    ref = torch_layer(False)
    post = TransformerEncoderLayer.from_torch(ref)
    pre = TransformerEncoderLayer.from_torch(torch_layer(True))
    pre.load_state_dict(post.state_dict())              # same weights, other order
    x = x_of(2, 5, 16)
    assert (post(x) - pre(x)).abs().max() > 1e-3
    with torch.no_grad():
        h = post.norm1(x + post.self_attn(x))
        close(post(x), post.norm2(h + post.feed_forward(h)))
        h = x + pre.self_attn(pre.norm1(x))
        close(pre(x), h + pre.feed_forward(pre.norm2(h)))
    # post-LN output rows are normalised (LayerNorm last); pre-LN rows are not
    plain = TransformerEncoderLayer(16, 4, norm_first=False).double()
    out = plain(x)
    close(out.mean(-1), torch.zeros(2, 5, dtype=torch.float64))


def test_need_weights():
    ours = TransformerEncoderLayer.from_torch(torch_layer(True))
    x = x_of(2, 5, 16)
    keep = padding_mask(torch.tensor([5, 3]), 5)[:, None, None, :]
    out, w = ours(x, mask=keep, need_weights=True)
    close(out, ours(x, mask=keep))
    assert w.shape == (2, 4, 5, 5)
    close(w.sum(-1), torch.ones(2, 4, 5, dtype=torch.float64))
    assert (w[1, ..., 3:] == 0).all()


def test_default_feed_forward_size_and_dropout_in_training_only():
    layer = TransformerEncoderLayer(8, 2, dropout=0.3)
    assert layer.linear1.out_features == 32
    x = x_of(2, 4, 8, dtype=torch.float32)
    torch.manual_seed(0)
    assert not torch.equal(layer(x), layer(x))
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))


def test_from_torch_copies_and_keeps_dtype():
    ref = torch_layer(False)
    ours = TransformerEncoderLayer.from_torch(ref)
    assert ours.linear1.weight.dtype == torch.float64 and not ours.training
    with torch.no_grad():
        ref.linear1.weight.zero_()
    assert ours.linear1.weight.abs().sum() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="not divisible"):
        TransformerEncoderLayer(10, 4)
    with pytest.raises(ValueError, match="activation must be one of"):
        TransformerEncoderLayer(8, 2, activation="tanh")
    with pytest.raises(ValueError, match="dim_feedforward must be >= 1"):
        TransformerEncoderLayer(8, 2, 0)
    with pytest.raises(ValueError, match="layer_norm_eps must be a finite number > 0"):
        TransformerEncoderLayer(8, 2, layer_norm_eps=0.0)
    with pytest.raises(ValueError, match=r"query must have shape \(B, Lq, E\)"):
        TransformerEncoderLayer(8, 2)(torch.zeros(2, 3, 6))
    with pytest.raises(TypeError, match="torch.nn.TransformerEncoderLayer"):
        TransformerEncoderLayer.from_torch(nn.Linear(2, 2))
    custom = nn.TransformerEncoderLayer(8, 2, activation=torch.tanh)
    with pytest.raises(ValueError, match="only 'relu' and 'gelu'"):
        TransformerEncoderLayer.from_torch(custom)
