"""Sparse attention equals dense attention with the pattern's mask, on random inputs.

The references are dense: attnlib.scaled_dot_product_attention with the mask from
attnlib.sparse_masks, and torch's own scaled_dot_product_attention given the same
mask. float64 must agree to rounding (1e-12), float32 to 1e-5.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import attnlib
from attnlib import (bigbird_attention, bigbird_mask, block_sparse_attention, fixed_attention,
                     fixed_mask, layout_to_mask, local_mask, longformer_attention, longformer_mask,
                     sliding_window_attention, strided_attention, strided_mask)

TIGHT = dict(rtol=0, atol=1e-12)
LOOSE = dict(rtol=1e-5, atol=1e-5)


def qkv(shape_q, shape_k=None, dv=None, seed=0, dtype=np.float64):
    """Seeded random q (shape_q), k (shape_k) and v (shape_k with last dim dv)."""
    rng = np.random.default_rng(seed)
    shape_k = shape_q if shape_k is None else shape_k
    dv = shape_k[-1] if dv is None else dv
    return (rng.normal(size=shape_q).astype(dtype), rng.normal(size=shape_k).astype(dtype),
            rng.normal(size=(*shape_k[:-1], dv)).astype(dtype))


def dense(q, k, v, mask):
    """The reference: attnlib's dense attention with the (n, n) mask."""
    return attnlib.scaled_dot_product_attention(q, k, v, mask=mask)


def torch_dense(q, k, v, mask):
    """Second reference: torch's own kernel, rows without keys set to zero."""
    q, k, v = (torch.as_tensor(x) for x in (q, k, v))
    mask = torch.as_tensor(mask)
    has_any = mask.any(-1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~has_any)
    return torch.where(has_any, out, 0.0).numpy()


def check_both_backends(fn, q, k, v, mask, **kwargs):
    """fn on numpy and on torch (float64) equals dense attention with mask; float32 close."""
    want = dense(q, k, v, mask)
    got = fn(q, k, v, **kwargs)
    assert isinstance(got, np.ndarray) and got.shape == want.shape and got.dtype == q.dtype
    np.testing.assert_allclose(got, want, **TIGHT)
    got_t = fn(*(torch.from_numpy(x) for x in (q, k, v)), **kwargs)
    assert isinstance(got_t, torch.Tensor) and got_t.dtype == torch.float64
    np.testing.assert_allclose(got_t.numpy(), want, **TIGHT)
    np.testing.assert_allclose(want, torch_dense(q, k, v, mask), **TIGHT)
    q32, k32, v32 = (torch.from_numpy(x.astype(np.float32)) for x in (q, k, v))
    got32 = fn(q32, k32, v32, **kwargs)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), want, **LOOSE)


# --- sliding window -------------------------------------------------------------

@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 90), window=st.integers(0, 24), causal=st.booleans(),
       dilation=st.sampled_from([1, 1, 2, 3]), block=st.sampled_from([None, 1, 3, 8, 16]),
       seed=st.integers(0, 2**16))
def test_sliding_window_equals_dense(n, window, causal, dilation, block, seed):
    q, k, v = qkv((2, n, 4), dv=3, seed=seed)
    mask = local_mask(n, window, causal=causal, dilation=dilation)
    check_both_backends(sliding_window_attention, q, k, v, mask, window=window, causal=causal,
                        dilation=dilation, block_size=block)


@pytest.mark.parametrize("n, window", [(1000, 64), (777, 50), (300, 1), (129, 128)])
def test_sliding_window_long_sequences(n, window):
    # long enough for the interior blocks, which read their keys as views
    q, k, v = qkv((2, 2, n, 8), seed=n)
    for causal in (False, True):
        check_both_backends(sliding_window_attention, q, k, v, local_mask(n, window, causal=causal),
                            window=window, causal=causal)


def test_sliding_window_batch_broadcast_and_scale():
    q, _, _ = qkv((3, 1, 20, 4), seed=1)
    _, k, v = qkv((1, 2, 20, 4), dv=5, seed=2)
    mask = local_mask(20, 3)
    want = attnlib.scaled_dot_product_attention(q, k, v, mask=mask, scale=0.3)
    got = sliding_window_attention(q, k, v, window=3, scale=0.3)
    assert got.shape == (3, 2, 20, 5)
    np.testing.assert_allclose(got, want, **TIGHT)
    got_t = sliding_window_attention(*(torch.from_numpy(x) for x in (q, k, v)), window=3, scale=0.3)
    assert got_t.shape == (3, 2, 20, 5)
    np.testing.assert_allclose(got_t.numpy(), want, **TIGHT)
    got_t = longformer_attention(*(torch.from_numpy(x) for x in (q, k, v)), window=3,
                                 global_tokens=[4], scale=0.3)
    np.testing.assert_allclose(got_t.numpy(), attnlib.scaled_dot_product_attention(
        q, k, v, mask=longformer_mask(20, 3, [4]), scale=0.3), **TIGHT)


def test_wide_window_is_full_attention():
    q, k, v = qkv((2, 30, 4), seed=3)
    np.testing.assert_allclose(sliding_window_attention(q, k, v, window=29),
                               attnlib.scaled_dot_product_attention(q, k, v), **TIGHT)
    np.testing.assert_allclose(sliding_window_attention(q, k, v, window=100, causal=True),
                               attnlib.scaled_dot_product_attention(q, k, v, causal=True), **TIGHT)


def test_window_zero_returns_the_values():
    q, k, v = qkv((2, 17, 4), seed=4)
    np.testing.assert_allclose(sliding_window_attention(q, k, v, window=0), v, **TIGHT)


@pytest.mark.parametrize("fn, kwargs, mask", [
    (sliding_window_attention, dict(window=3), local_mask(40, 3)),
    (sliding_window_attention, dict(window=3, causal=True, dilation=2),
     local_mask(40, 3, causal=True, dilation=2)),
    (longformer_attention, dict(window=2, global_tokens=[0, 17]), longformer_mask(40, 2, [0, 17])),
    (strided_attention, dict(stride=6), strided_mask(40, 6)),
    (fixed_attention, dict(stride=6, summary=2), fixed_mask(40, 6, summary=2)),
    (bigbird_attention, dict(block_size=5, seed=1), bigbird_mask(40, 5, seed=1)),
])
def test_gradients_equal_dense_gradients(fn, kwargs, mask):
    q, k, v = (torch.tensor(x, requires_grad=True) for x in qkv((2, 40, 4), seed=5))
    g = torch.randn(2, 40, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grads = torch.autograd.grad((fn(q, k, v, **kwargs) * g).sum(), (q, k, v))
    want = torch.autograd.grad((attnlib.scaled_dot_product_attention(q, k, v, mask=mask) * g).sum(),
                               (q, k, v))
    for a, b in zip(grads, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), **TIGHT)


# --- Longformer -------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 80), window=st.integers(0, 12), data=st.data(), seed=st.integers(0, 2**16))
def test_longformer_equals_dense(n, window, data, seed):
    g = data.draw(st.lists(st.integers(0, n - 1), max_size=4, unique=True))
    q, k, v = qkv((2, n, 4), dv=3, seed=seed)
    check_both_backends(longformer_attention, q, k, v, longformer_mask(n, window, g),
                        window=window, global_tokens=g)


def test_longformer_global_tokens_as_boolean_mask_and_long_sequence():
    n = 500
    q, k, v = qkv((2, n, 8), seed=6)
    g = np.zeros(n, dtype=bool)
    g[[0, 250, 499]] = True
    check_both_backends(longformer_attention, q, k, v, longformer_mask(n, 20, g), window=20,
                        global_tokens=g)


def test_longformer_without_global_tokens_is_the_sliding_window():
    q, k, v = qkv((30, 4), seed=7)
    np.testing.assert_allclose(longformer_attention(q, k, v, window=2, global_tokens=[]),
                               sliding_window_attention(q, k, v, window=2), **TIGHT)


# --- block sparse and BigBird ----------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(lq=st.integers(1, 50), lk=st.integers(1, 50), block=st.integers(1, 9),
       density=st.floats(0, 1), full_row=st.booleans(), seed=st.integers(0, 2**16))
def test_block_sparse_equals_dense(lq, lk, block, density, full_row, seed):
    rng = np.random.default_rng(seed)
    layout = rng.random((-(-lq // block), -(-lk // block))) < density
    if full_row:
        layout[rng.integers(layout.shape[0])] = True
    q, k, v = qkv((2, lq, 4), (2, lk, 4), dv=3, seed=seed)
    check_both_backends(block_sparse_attention, q, k, v, layout_to_mask(layout, block, lq, lk),
                        layout=layout, block_size=block)


def test_block_sparse_empty_rows_give_zeros():
    layout = np.array([[True, False], [False, False]])
    q, k, v = qkv((1, 8, 4), seed=8)
    for x in ((q, k, v), tuple(torch.from_numpy(a) for a in (q, k, v))):
        out = np.asarray(block_sparse_attention(*x, layout=layout, block_size=4))
        assert not np.isnan(out).any()
        np.testing.assert_array_equal(out[0, 4:], 0.0)
        np.testing.assert_allclose(out[0, :4], dense(q, k, v, layout_to_mask(layout, 4))[0, :4],
                                   **TIGHT)


@pytest.mark.parametrize("n, block, kwargs", [(64, 8, {}), (100, 8, dict(num_random=3, seed=4)),
                                              (37, 4, dict(window=2, num_global=2)), (5, 8, {}),
                                              (96, 16, dict(num_global=0, num_random=0))])
def test_bigbird_equals_dense(n, block, kwargs):
    q, k, v = qkv((2, n, 4), seed=n)
    check_both_backends(bigbird_attention, q, k, v, bigbird_mask(n, block, **kwargs),
                        block_size=block, **kwargs)


# --- Sparse Transformer: strided and fixed ---------------------------------------------

@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 90), stride=st.integers(1, 16), causal=st.booleans(),
       seed=st.integers(0, 2**16))
def test_strided_equals_dense(n, stride, causal, seed):
    q, k, v = qkv((2, n, 4), dv=3, seed=seed)
    check_both_backends(strided_attention, q, k, v, strided_mask(n, stride, causal=causal),
                        stride=stride, causal=causal)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 90), stride=st.integers(1, 16), data=st.data(), causal=st.booleans(),
       seed=st.integers(0, 2**16))
def test_fixed_equals_dense(n, stride, data, causal, seed):
    c = data.draw(st.integers(1, stride))
    q, k, v = qkv((2, n, 4), dv=3, seed=seed)
    check_both_backends(fixed_attention, q, k, v, fixed_mask(n, stride, summary=c, causal=causal),
                        stride=stride, summary=c, causal=causal)


def test_merge_partial_is_the_softmax_of_the_union():
    from attnlib.strided import attention_with_lse, merge_partial
    q, k, v = qkv((3, 10, 4), seed=9)
    split = np.random.default_rng(0).random((10, 10)) < 0.5
    split[3] = True                     # row 3: every key in the first part, none in the second
    a = attention_with_lse(q, k, v, split, 0.5)
    b = attention_with_lse(q, k, v, ~split, 0.5)
    assert np.isneginf(b[1][:, 3]).all() and (b[0][:, 3] == 0).all()
    np.testing.assert_allclose(merge_partial(a, b),
                               attnlib.scaled_dot_product_attention(q, k, v, scale=0.5), **TIGHT)


# --- bad input ------------------------------------------------------------------------------

Q, K, V = qkv((2, 10, 4), seed=10)


@pytest.mark.parametrize("call, error, words", [
    (lambda: sliding_window_attention(Q, K, V, window=-1), ValueError, "window must be >= 0"),
    (lambda: sliding_window_attention(Q, K, V, window=2.0), TypeError, "window must be an int"),
    (lambda: sliding_window_attention(Q, K, V, window=2, dilation=0), ValueError, "dilation"),
    (lambda: sliding_window_attention(Q, K, V, window=2, block_size=0), ValueError, "block_size"),
    (lambda: sliding_window_attention(Q, K[:, :9], V[:, :9], window=2), ValueError,
     "same length n"),
    (lambda: sliding_window_attention(Q, torch.from_numpy(K), V, window=2), TypeError,
     "all numpy arrays or all torch tensors"),
    (lambda: sliding_window_attention(Q, K[..., :3], V, window=2), ValueError, "feature size d"),
    (lambda: sliding_window_attention(Q, K, V, window=2, scale=float("nan")), ValueError, "scale"),
    (lambda: longformer_attention(Q, K, V, window=1, global_tokens=[10]), ValueError,
     "global_tokens must be positions in [-10, 10)"),
    (lambda: block_sparse_attention(Q, K, V, layout=np.ones((2, 2), bool), block_size=4),
     ValueError, "it needs shape (3, 3)"),
    (lambda: block_sparse_attention(Q, K, V, layout=np.ones((3, 3)), block_size=4), TypeError,
     "layout must be boolean"),
    (lambda: strided_attention(Q, K, V, stride=0), ValueError, "stride must be >= 1"),
    (lambda: fixed_attention(Q, K, V, stride=2, summary=3), ValueError, "summary must be <= stride"),
])
def test_bad_input(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)
