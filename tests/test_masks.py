"""attnlib.causal_mask / padding_mask: values, torch's conventions, and bad input."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlib import causal_mask, padding_mask, scaled_dot_product_attention


# --- causal_mask ----------------------------------------------------------------

@pytest.mark.parametrize("n_q, n_k", [(1, 1), (4, 4), (3, 6), (6, 3), (1, 5), (5, 1)])
def test_causal_mask_is_torchs_top_left_mask(n_q, n_k):
    m = causal_mask(n_q, n_k)
    assert isinstance(m, np.ndarray) and m.dtype == np.bool_ and m.shape == (n_q, n_k)
    # the mask torch documents for is_causal=True: ones(L, S).tril(diagonal=0)
    np.testing.assert_array_equal(m, torch.ones(n_q, n_k, dtype=torch.bool).tril().numpy())
    for i in range(n_q):
        for j in range(n_k):
            assert m[i, j] == (j <= i)


def test_causal_mask_default_is_square():
    np.testing.assert_array_equal(causal_mask(3), [[1, 0, 0], [1, 1, 0], [1, 1, 1]])


def test_causal_mask_can_be_empty():
    assert causal_mask(0).shape == (0, 0) and causal_mask(0, 3).shape == (0, 3)
    assert causal_mask(2, 0).shape == (2, 0)


@settings(max_examples=40, deadline=None)
@given(n_q=st.integers(1, 7), n_k=st.integers(1, 7), seed=st.integers(0, 2**32 - 1))
def test_causal_mask_gives_torchs_is_causal(n_q, n_k, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, n, 3, generator=gen, dtype=torch.float64) for n in (n_q, n_k, n_k))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    got = scaled_dot_product_attention(q, k, v, mask=causal_mask(n_q, n_k))
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_causal_mask_is_causal():
    """Changing a later key or value never changes an earlier query's output."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(6, 4)) for _ in range(3))
    out = scaled_dot_product_attention(q, k, v, mask=causal_mask(6))
    k2, v2 = k.copy(), v.copy()
    k2[4:], v2[4:] = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    out2 = scaled_dot_product_attention(q, k2, v2, mask=causal_mask(6))
    np.testing.assert_allclose(out2[:4], out[:4], rtol=1e-15)
    assert not np.allclose(out2[4:], out[4:])


@pytest.mark.parametrize("n_q, n_k", [(3, 5), (1, 6), (4, 4)])
def test_bottom_right_mask_is_torchs_causal_lower_right(n_q, n_k):
    """The mask the book uses for queries at the end of the keys (a decoding cache)."""
    from torch.nn.attention.bias import causal_lower_right
    gen = torch.Generator().manual_seed(n_q * 10 + n_k)
    q, k, v = (torch.randn(2, n, 4, generator=gen, dtype=torch.float64) for n in (n_q, n_k, n_k))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(n_q, n_k))
    got = scaled_dot_product_attention(q, k, v, mask=np.tri(n_q, n_k, n_k - n_q, dtype=bool))
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    # and it is the last n_q rows of square causal attention over the n_k keys
    full = scaled_dot_product_attention(torch.cat([k[:, : n_k - n_q], q], 1), k, v, mask=causal_mask(n_k))
    torch.testing.assert_close(got, full[:, n_k - n_q:], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("args, exc, message", [
    ((-1,), ValueError, r"n_q must be >= 0, got -1"),
    ((3, -2), ValueError, r"n_k must be >= 0, got -2"),
    ((2.0,), TypeError, r"n_q must be an int, got float"),
    ((3, 2.5), TypeError, r"n_k must be an int, got float"),
    ((True,), TypeError, r"n_q must be an int, got bool"),
    (("3",), TypeError, r"n_q must be an int, got str"),
])
def test_causal_mask_bad_input(args, exc, message):
    with pytest.raises(exc, match=message):
        causal_mask(*args)


def test_causal_mask_accepts_numpy_integers():
    np.testing.assert_array_equal(causal_mask(np.int64(3), np.int32(2)), causal_mask(3, 2))


# --- padding_mask ---------------------------------------------------------------

def test_padding_mask_values():
    np.testing.assert_array_equal(padding_mask([2, 0, 4], 4),
                                  [[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])


@settings(max_examples=50, deadline=None)
@given(lengths=st.lists(st.integers(0, 8), min_size=1, max_size=5), extra=st.integers(0, 3),
       as_tensor=st.booleans())
def test_padding_mask_matches_a_loop(lengths, extra, as_tensor):
    max_len = max(lengths) + extra
    arg = torch.tensor(lengths) if as_tensor else np.array(lengths)
    m = padding_mask(arg, max_len)
    assert isinstance(m, torch.Tensor if as_tensor else np.ndarray)
    assert m.dtype in (torch.bool, np.bool_) and tuple(m.shape) == (len(lengths), max_len)
    want = [[j < n for j in range(max_len)] for n in lengths]
    np.testing.assert_array_equal(np.asarray(m), want)
    np.testing.assert_array_equal(np.asarray(m).sum(1), lengths)


def test_padding_mask_is_the_hugging_face_attention_mask():
    """The 1/0 attention_mask a Hugging Face tokenizer returns for right padding."""
    lengths = [3, 1, 5]
    hf_style = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    torch.testing.assert_close(padding_mask(torch.tensor(lengths), 5), hf_style.bool())


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_padding_mask_in_attention_ignores_padded_keys(backend):
    rng = np.random.default_rng(1)
    lengths = np.array([2, 5, 3])
    x = rng.normal(size=(3, 5, 4))
    mk = (lambda a: torch.from_numpy(a)) if backend == "torch" else (lambda a: a)
    mask = padding_mask(mk(lengths), 5)[:, None, :]            # (B, 1, Lk): every query, same keys
    out = np.asarray(scaled_dot_product_attention(mk(x), mk(x), mk(x), mask=mask))
    for b, n in enumerate(lengths):
        ref = F.scaled_dot_product_attention(*(torch.from_numpy(x[b, :, :])[None] for _ in range(2)),
                                             torch.from_numpy(x[b])[None],
                                             attn_mask=torch.arange(5) < int(n))[0].numpy()
        np.testing.assert_allclose(out[b], ref, rtol=1e-12, atol=1e-12)


def test_padding_mask_list_input_and_empty_batch():
    np.testing.assert_array_equal(padding_mask([1], 2), [[True, False]])
    assert padding_mask(np.array([], dtype=np.int64), 3).shape == (0, 3)
    assert padding_mask([0, 0], 0).shape == (2, 0)


@pytest.mark.parametrize("lengths, max_len, exc, message", [
    ([[1, 2]], 3, TypeError, r"lengths must be a 1-D array of integers of shape \(B,\), got shape \(1, 2\)"),
    (3, 4, TypeError, r"lengths must be a 1-D array of integers of shape \(B,\), got shape \(\)"),
    ([1.0, 2.0], 3, TypeError, r"got shape \(2,\) and dtype float64"),
    (np.array([True, False]), 3, TypeError, r"dtype bool"),
    (torch.tensor([1.5]), 3, TypeError, r"dtype float32"),
    ([1, 5], 4, ValueError, r"lengths must lie in \[0, max_len=4\], got \[1, 5\]"),
    ([-1, 2], 4, ValueError, r"lengths must lie in \[0, max_len=4\], got \[-1, 2\]"),
    ([1, 2], -1, ValueError, r"max_len must be >= 0, got -1"),
    ([1, 2], 3.0, TypeError, r"max_len must be an int, got float"),
])
def test_padding_mask_bad_input(lengths, max_len, exc, message):
    with pytest.raises(exc, match=message):
        padding_mask(lengths, max_len)
