"""attnlib.grouped_query_attention against torch's SDPA with ``enable_gqa=True``, against
multi-head attention with the key/value heads repeated, and attnlib.kv_cache_bytes.

Tolerances: 1e-5 in float32, 1e-12 in float64, on random inputs with masks.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlib import KVCache, grouped_query_attention, kv_cache_bytes, scaled_dot_product_attention


def qkv(b, h, h_kv, lq, lk, d, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, lq, d, generator=g, dtype=dtype),
            torch.randn(b, h_kv, lk, d, generator=g, dtype=dtype),
            torch.randn(b, h_kv, lk, d, generator=g, dtype=dtype))


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 3), h_kv=st.integers(1, 4), group=st.integers(1, 4), lq=st.integers(1, 9),
       lk=st.integers(1, 9), d=st.sampled_from([1, 4, 8]), causal=st.booleans(), seed=st.integers(0, 99))
def test_equals_torch_sdpa_enable_gqa(b, h_kv, group, lq, lk, d, causal, seed):
    """Both paths: torch tensors without a mask go to torch's kernel itself; numpy
    arrays take attnlib's own path, the groups folded into a dimension."""
    q, k, v = qkv(b, h_kv * group, h_kv, lq, lk, d, torch.float64, seed)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    torch.testing.assert_close(grouped_query_attention(q, k, v, causal=causal), want,
                               atol=1e-12, rtol=1e-12)
    folded = grouped_query_attention(q.numpy(), k.numpy(), v.numpy(), causal=causal)
    np.testing.assert_allclose(folded, want.numpy(), atol=1e-12, rtol=1e-12)
    repeated = scaled_dot_product_attention(q.numpy(), k.repeat_interleave(group, 1).numpy(),
                                            v.repeat_interleave(group, 1).numpy(), causal=causal)
    np.testing.assert_allclose(folded, repeated, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_equals_attention_with_repeated_kv_heads_and_a_mask(dtype, tol):
    q, k, v = qkv(2, 6, 2, 5, 7, 8, dtype)
    mask = torch.rand(2, 6, 5, 7, generator=torch.Generator().manual_seed(3)) > 0.4
    want = scaled_dot_product_attention(q, k.repeat_interleave(3, dim=1),
                                        v.repeat_interleave(3, dim=1), mask=mask)
    got = grouped_query_attention(q, k, v, mask=mask, scale=None)
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True, scale=0.3)
    torch.testing.assert_close(grouped_query_attention(q, k, v, mask=mask, scale=0.3), sdpa,
                               atol=tol, rtol=tol)


def test_group_size_one_is_multi_head_attention():
    q, k, v = qkv(2, 4, 4, 6, 6, 8, torch.float64)
    torch.testing.assert_close(grouped_query_attention(q, k, v, causal=True),
                               scaled_dot_product_attention(q, k, v, causal=True), atol=1e-12, rtol=1e-12)


def test_numpy_in_numpy_out():
    q, k, v = qkv(1, 4, 2, 3, 5, 4, torch.float64)
    got = grouped_query_attention(q.numpy(), k.numpy(), v.numpy(), causal=True)
    assert isinstance(got, np.ndarray) and got.shape == (1, 4, 3, 4)
    np.testing.assert_allclose(got, grouped_query_attention(q, k, v, causal=True).numpy(), atol=1e-12)


def test_bad_shapes_get_clear_errors():
    q, k, v = qkv(1, 6, 4, 3, 3, 4)
    with pytest.raises(ValueError, match=r"H % H_kv must be 0"):
        grouped_query_attention(q, k, v)
    with pytest.raises(ValueError, match=r"k must have shape \(B, H_kv, Lk, d\)"):
        grouped_query_attention(q, k[0], v)
    with pytest.raises(ValueError, match="same number of key/value heads"):
        grouped_query_attention(q, k[:, :2], v[:, :3])
    with pytest.raises(TypeError, match="mask must be boolean"):
        grouped_query_attention(q, k[:, :2], v[:, :2], mask=torch.ones(3, 3))
    with pytest.raises(TypeError, match="all numpy arrays or all torch tensors"):
        grouped_query_attention(q, k[:, :2].numpy(), v[:, :2])


def test_a_query_with_nothing_to_attend_gets_zeros():
    q, k, v = qkv(1, 4, 2, 3, 5, 8)
    mask = torch.ones(1, 4, 3, 5, dtype=torch.bool)
    mask[0, 1, 2] = False                                 # head 1, query 2: every key masked
    out = grouped_query_attention(q, k, v, mask=mask)
    assert torch.isfinite(out).all() and (out[0, 1, 2] == 0).all()


def test_kv_cache_bytes_counts_what_a_cache_holds():
    cache = KVCache(3)
    for layer in range(3):
        cache.update(layer, torch.zeros(2, 4, 10, 8), torch.zeros(2, 4, 10, 8))
    assert len(cache) == 10
    assert cache.nbytes == kv_cache_bytes(3, 4, 8, 10, batch=2, bytes_per_value=4) == 2 * 3 * 4 * 8 * 10 * 2 * 4
    # GPT-2 small: 12 layers, 12 heads of 64, 1024 tokens, float16: 36 MiB
    assert kv_cache_bytes(12, 12, 64, 1024) == 37_748_736


def test_kv_cache_update_checks_its_input():
    cache = KVCache(2)
    cache.update(0, torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match="does not fit the cached keys"):
        cache.update(0, torch.zeros(1, 3, 1, 4), torch.zeros(1, 3, 1, 4))
    with pytest.raises(ValueError, match="layer must be < num_layers=2"):
        cache.update(2, torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4))
    with pytest.raises(ValueError, match="tokens must be >= 0"):
        kv_cache_bytes(1, 1, 1, -1)
