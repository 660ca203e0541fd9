"""attnlib.MultiHeadAttention: equivalence with torch.nn.MultiheadAttention, properties, bad input.

The reference is ``torch.nn.MultiheadAttention`` given the same (random, non-zero)
weights and biases. Tolerances: float64 to ``atol = rtol = 1e-12``, float32 to
``atol = rtol = 1e-5``. Masks: attnlib's boolean masks are True = may attend;
torch's ``key_padding_mask`` and boolean ``attn_mask`` are True = may NOT attend,
so the tests pass torch the negation. ``need_weights=True`` returns per-head
weights ``(B, H, Lq, Lk)``; torch's default is their mean over the heads.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attnlib import MultiHeadAttention, padding_mask
from attnlib.multihead import merge_heads, split_heads
from tests.arrays import close, x_of



def torch_mha(e=12, h=3, bias=True, dtype=torch.float64, seed=0, batch_first=True):
    """torch.nn.MultiheadAttention with every weight and bias drawn from N(0, 0.5^2)."""
    torch.manual_seed(seed)
    m = nn.MultiheadAttention(e, h, bias=bias, batch_first=batch_first, dtype=dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.5)
    return m.eval()


# --- equivalence with torch.nn.MultiheadAttention ---------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_self_attention_matches_torch(dtype, bias):
    ref = torch_mha(bias=bias, dtype=dtype)
    ours = MultiHeadAttention.from_torch(ref)
    x = x_of(2, 5, 12, dtype=dtype)
    want, _ = ref(x, x, x, need_weights=False)
    close(ours(x), want, dtype)


def test_cross_attention_with_different_lengths_matches_torch():
    ref = torch_mha(e=16, h=4)
    ours = MultiHeadAttention.from_torch(ref)
    q, k, v = x_of(3, 4, 16, seed=1), x_of(3, 7, 16, seed=2), x_of(3, 7, 16, seed=3)
    want, _ = ref(q, k, v)
    close(ours(q, k, v), want)


def test_key_defaults_to_query_and_value_to_key():
    ours = MultiHeadAttention.from_torch(torch_mha())
    x, y = x_of(2, 5, 12, seed=1), x_of(2, 6, 12, seed=2)
    close(ours(x), ours(x, x, x))
    close(ours(x, y), ours(x, y, y))


def test_seq_first_torch_module_has_the_same_weights():
    ref = torch_mha(batch_first=False)
    ours = MultiHeadAttention.from_torch(ref)
    x = x_of(2, 5, 12)
    want, _ = ref(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1))
    close(ours(x), want.transpose(0, 1))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_key_padding_mask_matches_torch(dtype):
    ref = torch_mha(dtype=dtype)
    ours = MultiHeadAttention.from_torch(ref)
    x = x_of(3, 6, 12, dtype=dtype)
    keep = padding_mask(torch.tensor([6, 2, 4]), 6)                   # (B, Lk), True = token
    want, _ = ref(x, x, x, key_padding_mask=~keep)                     # torch: True = padding
    close(ours(x, mask=keep[:, None, None, :]), want, dtype)


def test_causal_matches_torch():
    ref = torch_mha()
    ours = MultiHeadAttention.from_torch(ref)
    x = x_of(2, 7, 12)
    future = torch.ones(7, 7, dtype=torch.bool).triu(1)               # torch: True = blocked
    want, _ = ref(x, x, x, attn_mask=future, is_causal=True)
    close(ours(x, causal=True), want)


def test_causal_and_padding_together_match_torch():
    ref = torch_mha()
    ours = MultiHeadAttention.from_torch(ref)
    x = x_of(2, 6, 12)
    keep = padding_mask(torch.tensor([6, 3]), 6)
    future = torch.ones(6, 6, dtype=torch.bool).triu(1)
    want, _ = ref(x, x, x, key_padding_mask=~keep, attn_mask=future)
    close(ours(x, mask=keep[:, None, None, :], causal=True), want)


def test_full_per_head_mask_matches_torch():
    ref = torch_mha(e=8, h=2)
    ours = MultiHeadAttention.from_torch(ref)
    b, h, lq, lk = 2, 2, 4, 5
    keep = torch.rand(b, h, lq, lk, generator=torch.Generator().manual_seed(3)) < 0.6
    keep[..., 0] = True                                                # no empty rows
    q, kv = x_of(b, lq, 8, seed=4), x_of(b, lk, 8, seed=5)
    want, _ = ref(q, kv, kv, attn_mask=~keep.reshape(b * h, lq, lk))
    close(ours(q, kv, mask=keep), want)


def test_need_weights_per_head_and_their_mean_match_torch():
    ref = torch_mha()
    ours = MultiHeadAttention.from_torch(ref)
    x = x_of(2, 5, 12)
    keep = padding_mask(torch.tensor([5, 3]), 5)[:, None, None, :]
    out, weights = ours(x, mask=keep, need_weights=True)
    want, per_head = ref(x, x, x, key_padding_mask=~keep[:, 0, 0], average_attn_weights=False)
    _, averaged = ref(x, x, x, key_padding_mask=~keep[:, 0, 0])
    assert weights.shape == (2, 3, 5, 5)
    close(out, want)
    close(weights, per_head)
    close(weights.mean(dim=1), averaged)
    close(weights.sum(-1), torch.ones(2, 3, 5, dtype=torch.float64))
    assert (weights[1, :, :, 3:] == 0).all()


def test_fast_and_plain_paths_agree():
    ours = MultiHeadAttention.from_torch(torch_mha())
    x = x_of(2, 6, 12)
    keep = padding_mask(torch.tensor([6, 4]), 6)[:, None, None, :]
    for kwargs in ({}, {"mask": keep}, {"causal": True}, {"mask": keep, "causal": True}):
        close(ours(x, **kwargs), ours(x, need_weights=True, **kwargs)[0])


def test_gradients_match_torch():
    ref = torch_mha()
    ours = MultiHeadAttention.from_torch(ref)
    x = x_of(2, 5, 12)
    keep = padding_mask(torch.tensor([5, 2]), 5)
    ref(x, x, x, key_padding_mask=~keep)[0].pow(2).sum().backward()
    ours(x, mask=keep[:, None, None, :]).pow(2).sum().backward()
    grad_in = torch.cat([ours.q_proj.weight.grad, ours.k_proj.weight.grad, ours.v_proj.weight.grad])
    close(grad_in, ref.in_proj_weight.grad)
    close(ours.out_proj.bias.grad, ref.out_proj.bias.grad)


# --- properties ---------------------------------------------------------------

def test_fully_masked_query_gives_zeros_not_nan():
    ref = torch_mha()
    ours = MultiHeadAttention.from_torch(ref)
    x = x_of(1, 4, 12)
    keep = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    keep[..., 2, :] = False                                            # query 2 sees nothing
    out, w = ours(x, mask=keep, need_weights=True)
    assert torch.isfinite(out).all() and (w[0, :, 2] == 0).all()
    # the attention output of that query is 0, so the module returns out_proj's bias there
    close(out[0, 2], ref.out_proj.bias)
    torch_out, _ = ref(x, x, x, attn_mask=~keep[0, 0])
    assert torch.isnan(torch_out[0, 2]).all()                          # torch gives NaN


def test_padding_keys_do_not_change_the_output():
    ours = MultiHeadAttention.from_torch(torch_mha())
    x = x_of(1, 6, 12)
    keep = padding_mask(torch.tensor([4]), 6)[:, None, None, :]
    y = x.clone()
    y[:, 4:] = 100.0 * x_of(1, 2, 12, seed=9)                           # change the padding
    close(ours(x, mask=keep)[:, :4], ours(y, mask=keep)[:, :4])         # the real tokens' outputs


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), length=st.integers(1, 7))
def test_permutation_equivariance(seed, length):
    ours = MultiHeadAttention.from_torch(torch_mha(seed=seed % 7))
    x = x_of(2, length, 12, seed=seed)
    perm = torch.randperm(length, generator=torch.Generator().manual_seed(seed))
    close(ours(x)[:, perm], ours(x[:, perm]))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), j=st.integers(0, 5))
def test_every_head_sees_every_position(seed, j):
    """What every head outputs at every query position depends on token j: its derivative
    with respect to x_j is not zero. (A finite change of x_j can vanish in rounding when
    a weight is tiny next to the others; the derivative does not.)"""
    ours = MultiHeadAttention.from_torch(torch_mha(seed=seed % 5))
    x = x_of(1, 6, 12, seed=seed)
    _, w = ours(x, need_weights=True)
    assert (w > 0).all()                                               # every head weights every key

    def head_outputs(x_j):                                             # (12,) -> (1, 3, 6, 4)
        y = torch.cat([x[:, :j], x_j[None, None], x[:, j + 1:]], dim=1)
        _, wy = ours(y, need_weights=True)
        return torch.einsum("bhqk,bkhd->bhqd", wy, split_heads(ours.v_proj(y), 3).transpose(1, 2))

    jac = torch.autograd.functional.jacobian(head_outputs, x[0, j])     # (1, 3, 6, 4, 12)
    assert (jac.abs().amax(dim=(-2, -1)) > 0).all()


def test_split_and_merge_heads_are_inverse_and_split_features():
    x = x_of(2, 5, 12)
    s = split_heads(x, 3)
    assert s.shape == (2, 3, 5, 4)
    close(s[:, 1], x[..., 4:8])                                        # head 1 = features 4..7
    close(merge_heads(s), x)


@pytest.mark.parametrize("heads", [1, 2, 3, 4, 6, 12])
def test_parameter_count_does_not_depend_on_heads(heads):
    m = MultiHeadAttention(12, heads)
    assert sum(p.numel() for p in m.parameters()) == 4 * 12 * 12 + 4 * 12
    assert sum(p.numel() for p in MultiHeadAttention(12, heads, bias=False).parameters()) == 4 * 144


def test_dropout_only_in_training():
    torch.manual_seed(0)
    m = MultiHeadAttention(12, 3, dropout=0.5)
    x = x_of(2, 5, 12, dtype=torch.float32)
    a, b = m(x), m(x)
    assert not torch.equal(a, b)                                       # random in training
    m.eval()
    no_dropout = MultiHeadAttention(12, 3)
    no_dropout.load_state_dict(m.state_dict())
    torch.testing.assert_close(m(x), no_dropout(x))
    torch.manual_seed(5)
    first = m.train()(x)
    torch.manual_seed(5)
    torch.testing.assert_close(m(x), first)                            # reproducible with a seed


def test_from_torch_copies_and_keeps_dtype_and_mode():
    ref = torch_mha()
    ref.train()
    ours = MultiHeadAttention.from_torch(ref)
    assert ours.training and ours.q_proj.weight.dtype == torch.float64
    with torch.no_grad():
        ref.in_proj_weight.zero_()
    assert ours.q_proj.weight.abs().sum() > 0                          # a copy, not a view
    dropped = MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, dropout=0.25))
    assert dropped.dropout == 0.25
    assert dropped.q_proj.bias is not None


def test_from_torch_without_bias():
    ref = torch_mha(bias=False)
    ours = MultiHeadAttention.from_torch(ref)
    assert ours.q_proj.bias is None and ours.out_proj.bias is None


# --- bad input ----------------------------------------------------------------

@pytest.mark.parametrize("args, err, match", [
    ((10, 3), ValueError, "not divisible by n_heads=3"),
    ((0, 1), ValueError, "d_model must be >= 1"),
    ((8, 0), ValueError, "n_heads must be >= 1"),
    ((8.0, 2), TypeError, "d_model must be an int"),
    ((8, True), TypeError, "n_heads must be an int"),
])
def test_bad_construction(args, err, match):
    with pytest.raises(err, match=match):
        MultiHeadAttention(*args)


@pytest.mark.parametrize("p", [-0.1, 1.0, 2])
def test_bad_dropout(p):
    with pytest.raises(ValueError, match="dropout must lie in"):
        MultiHeadAttention(8, 2, dropout=p)


def test_bad_inputs_name_the_argument_and_shape():
    m = MultiHeadAttention(8, 2).double()
    x = x_of(2, 5, 8)
    with pytest.raises(ValueError, match=r"query must have shape \(B, Lq, E\).*got shape \(2, 5, 6\)"):
        m(x_of(2, 5, 6))
    with pytest.raises(ValueError, match=r"query must have shape.*got shape \(5, 8\)"):
        m(x_of(5, 8))
    with pytest.raises(ValueError, match=r"key must have shape"):
        m(x, x_of(2, 5, 4))
    with pytest.raises(ValueError, match="same batch size"):
        m(x, x_of(3, 5, 8))
    with pytest.raises(ValueError, match="same length Lk"):
        m(x, x_of(2, 5, 8), x_of(2, 4, 8))
    with pytest.raises(TypeError, match="query must be a torch tensor"):
        m(np.zeros((2, 5, 8)))
    with pytest.raises(TypeError, match="dtype torch.float32 but the module's weights are torch.float64"):
        m(x.float())


def test_bad_masks():
    m = MultiHeadAttention(8, 2).double()
    x = x_of(2, 5, 8)
    with pytest.raises(ValueError, match=r"mask of shape \(2, 5\) cannot broadcast to shape \(2, 2, 5, 5\)"):
        m(x, mask=torch.ones(2, 5, dtype=torch.bool))     # a (B, Lk) padding mask needs [:, None, None, :]
    with pytest.raises(ValueError, match="cannot broadcast"):
        m(x, mask=torch.ones(3, 1, 1, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be boolean"):
        m(x, mask=torch.ones(2, 1, 1, 5))


def test_from_torch_rejects_what_it_cannot_copy():
    with pytest.raises(TypeError, match="torch.nn.MultiheadAttention"):
        MultiHeadAttention.from_torch(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="kdim"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, kdim=4, vdim=4))
    with pytest.raises(ValueError, match="add_bias_kv"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, add_bias_kv=True))
