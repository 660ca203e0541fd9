"""attnlib.chunked_attention: exact against torch SDPA and attnlib, any length, masks, bad input."""

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import attnlib
from attnlib import benchmark, chunked_attention, scaled_dot_product_attention
from attnlib.chunked import _chunked_plain, causal_blocks
from tests.arrays import CHUNKED_TOL, qkv_tensors as qkv

# --- equivalence with torch SDPA ---------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n, chunk", [(1, 4), (7, 3), (64, 16), (100, 32), (257, 64), (300, 1024)])
def test_equals_torch_sdpa(n, chunk, causal, dtype):
    q, k, v = qkv(n, dtype=dtype, seed=n)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    got = chunked_attention(q, k, v, chunk_size=chunk, causal=causal)
    assert isinstance(got, torch.Tensor) and got.dtype == dtype and got.shape == ref.shape
    torch.testing.assert_close(got, ref, **CHUNKED_TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_numpy_equals_torch_sdpa(causal, dtype):
    q, k, v = qkv(203, dtype=dtype, seed=3)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal).numpy()
    got = chunked_attention(q.numpy(), k.numpy(), v.numpy(), chunk_size=50, causal=causal)
    assert isinstance(got, np.ndarray) and got.dtype == ref.dtype
    np.testing.assert_allclose(got, ref, **CHUNKED_TOL[dtype])


def test_long_sequence_float32():
    # many tiles per row: rounding must not build up beyond 1e-6
    q, k, v = qkv(3000, d=64, batch=(1, 2), dtype=torch.float32, seed=5)
    for causal in (False, True):
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        torch.testing.assert_close(chunked_attention(q, k, v, chunk_size=128, causal=causal), ref,
                                   **CHUNKED_TOL[torch.float32])


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n, m", [(10, 37), (37, 10), (1, 50), (50, 1)])
def test_different_query_and_key_lengths(n, m, causal):
    # causal is aligned top-left, as torch's is_causal
    q, k, v = qkv(n, m, dv=5, seed=n + m)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(chunked_attention(q, k, v, chunk_size=8, causal=causal), ref,
                               **CHUNKED_TOL[torch.float64])


def test_scale_and_value_width():
    q, k, v = qkv(40, d=8, dv=3, seed=1)
    ref = F.scaled_dot_product_attention(q, k, v, scale=0.7)
    torch.testing.assert_close(chunked_attention(q, k, v, chunk_size=16, scale=0.7), ref)


def test_broadcast_batch_dimensions():
    q, _, _ = qkv(20, batch=(2, 1))
    _, k, v = qkv(20, batch=(1, 3), seed=1)
    ref = scaled_dot_product_attention(q, k, v)
    got = chunked_attention(q, k, v, chunk_size=6)
    assert got.shape == (2, 3, 20, 16)
    torch.testing.assert_close(got, ref)
    got_np = chunked_attention(q.numpy(), k.numpy(), v.numpy(), chunk_size=6)
    np.testing.assert_allclose(got_np, ref.numpy(), rtol=1e-10, atol=1e-10)


def test_large_scores_stay_finite():
    q, k, v = qkv(64, dtype=torch.float32, seed=2)
    q = q * 300.0                                   # scores of size ~1e4
    got = chunked_attention(q, k, v, chunk_size=16)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v), rtol=1e-5, atol=1e-5)



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("trend", [1.0, -1.0])
def test_scores_that_drift_far_along_the_keys(trend, dtype):
    """Each key block scores about 20 above (or below) the one before, 250 in all: the
    fast path's shift, kept from the first block, must move up when the exponentials grow."""
    q, k, v = qkv(40, 200, dtype=dtype, seed=11)
    q, k = q.detach().clone(), k.detach().clone()
    q[..., 0] = 10.0
    k[..., 0] = trend * 0.5 * torch.arange(200, dtype=dtype)    # score + 1.25 per key
    got = chunked_attention(q, k, v, chunk_size=16)
    assert torch.isfinite(got).all()
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v), rtol=tol, atol=tol)


# --- masks --------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["torch", "numpy"])
@pytest.mark.parametrize("mask_shape", [(40,), (1, 40), (33, 40), (3, 1, 40), (2, 3, 33, 40),
                                        (2, 1, 33, 1)])
@pytest.mark.parametrize("causal", [False, True])
def test_mask_equals_attnlib_sdpa(mask_shape, causal, backend):
    q, k, v = qkv(33, 40, seed=4)
    mask = torch.rand(mask_shape, generator=torch.Generator().manual_seed(1)) > 0.4
    if backend == "numpy":
        q, k, v, mask = (t.numpy() for t in (q, k, v, mask))
    ref = scaled_dot_product_attention(q, k, v, mask=mask, causal=causal)
    got = chunked_attention(q, k, v, mask=mask, causal=causal, chunk_size=7)
    assert type(got) is type(ref)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("make", [torch.as_tensor, np.asarray])
def test_fully_masked_rows_give_zeros(make):
    q, k, v = (make(t) for t in qkv(12, batch=(2,), seed=6))
    mask = np.ones((2, 12, 12), dtype=bool)
    mask[0, 3] = False                  # one empty query row
    mask[1, :, :5] = False              # keys 0..4 masked: with causal, rows 0..4 are empty
    for causal in (False, True):
        got = np.asarray(chunked_attention(q, k, v, mask=make(mask), causal=causal, chunk_size=4))
        assert not np.isnan(got).any()
        np.testing.assert_array_equal(got[0, 3], 0.0)
        if causal:
            np.testing.assert_array_equal(got[1, :5], 0.0)
        ref = np.asarray(scaled_dot_product_attention(q, k, v, mask=make(mask), causal=causal))
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)


def test_everything_masked_and_empty_keys():
    q, k, v = qkv(9, seed=7)
    got = chunked_attention(q, k, v, mask=torch.zeros(9, 9, dtype=torch.bool), chunk_size=4)
    assert torch.equal(got, torch.zeros_like(got))
    got = chunked_attention(q, k[..., :0, :], v[..., :0, :], chunk_size=4)
    assert got.shape == q.shape and torch.equal(got, torch.zeros_like(got))
    got = chunked_attention(q.numpy(), k.numpy()[..., :0, :], v.numpy()[..., :0, :])
    assert got.shape == q.shape and not got.any()


def test_empty_queries():
    q, k, v = qkv(5, seed=8)
    assert chunked_attention(q[..., :0, :], k, v).shape == (2, 3, 0, 16)
    assert chunked_attention(q.numpy()[..., :0, :], k.numpy(), v.numpy()).shape == (2, 3, 0, 16)


# --- the two paths, autograd ----------------------------------------------------------

@pytest.mark.parametrize("causal", [False, True])
def test_plain_path_equals_fast_path_in_torch(causal):
    q, k, v = qkv(45, dtype=torch.float32, seed=9)
    mask = torch.rand(45, 45, generator=torch.Generator().manual_seed(2)) > 0.5
    for m in (None, mask):
        fast = chunked_attention(q, k, v, chunk_size=10, causal=causal, mask=m)
        plain = _chunked_plain(q, k, v, m, causal, 0.25, 10, (2, 3))
        torch.testing.assert_close(fast, plain, rtol=1e-6, atol=1e-6)


def test_gradients_match_sdpa():
    q, k, v = (t.requires_grad_() for t in qkv(30, seed=10))
    weights = torch.randn(2, 3, 30, 16, dtype=torch.float64)
    grads = {}
    for name, fn in [("chunked", lambda: chunked_attention(q, k, v, chunk_size=8, causal=True)),
                     ("sdpa", lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))]:
        (fn() * weights).sum().backward()
        grads[name] = [t.grad.clone() for t in (q, k, v)]
        for t in (q, k, v):
            t.grad = None
    for a, b in zip(grads["chunked"], grads["sdpa"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_inputs_are_not_modified():
    q, k, v = qkv(20, seed=11)
    copies = [t.clone() for t in (q, k, v)]
    chunked_attention(q, k, v, chunk_size=6, causal=True)
    assert all(torch.equal(a, b) for a, b in zip((q, k, v), copies))


# --- causal tiles ---------------------------------------------------------------------

@given(n_q=st.integers(1, 40), n_k=st.integers(1, 40), chunk=st.integers(1, 12))
def test_causal_blocks_visit_exactly_the_tiles_with_allowed_pairs(n_q, n_k, chunk):
    allowed = np.tril(np.ones((n_q, n_k), dtype=bool))
    visited = {(q0, k0): needs for q0, k0, needs in causal_blocks(n_q, n_k, chunk)}
    for q0 in range(0, n_q, chunk):
        for k0 in range(0, n_k, chunk):
            tile = allowed[q0:q0 + chunk, k0:k0 + chunk]
            assert ((q0, k0) in visited) == bool(tile.any())
            if (q0, k0) in visited:
                assert visited[(q0, k0)] == (not tile.all())


def test_causal_skips_almost_half_of_the_tiles():
    tiles = causal_blocks(8192, 8192, 1024)
    assert len(tiles) == 8 * 9 // 2                       # 36 of 64
    assert sum(needs for _, _, needs in tiles) == 8        # only the diagonal needs a mask


# --- hypothesis: any length, any chunk size ----------------------------------------------

@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 70), m=st.integers(1, 70), chunk=st.integers(1, 80),
       causal=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float64]),
       numpy=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_property_equals_sdpa_for_any_length_and_chunk(n, m, chunk, causal, dtype, numpy, seed):
    q, k, v = qkv(n, m, d=8, batch=(2,), dtype=dtype, seed=seed)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    if numpy:
        got = torch.from_numpy(chunked_attention(q.numpy(), k.numpy(), v.numpy(), chunk_size=chunk,
                                                 causal=causal))
    else:
        got = chunked_attention(q, k, v, chunk_size=chunk, causal=causal)
    torch.testing.assert_close(got, ref, **CHUNKED_TOL[dtype])


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 30), chunk=st.integers(1, 12), density=st.floats(0.0, 1.0),
       seed=st.integers(0, 2 ** 16))
def test_property_random_masks(n, chunk, density, seed):
    q, k, v = qkv(n, batch=(2,), seed=seed)
    mask = torch.rand(2, n, n, generator=torch.Generator().manual_seed(seed)) < density
    ref = scaled_dot_product_attention(q, k, v, mask=mask)
    torch.testing.assert_close(chunked_attention(q, k, v, mask=mask, chunk_size=chunk), ref,
                               rtol=1e-10, atol=1e-10)


# --- memory: the (n, n) matrix never exists ------------------------------------------------

def test_extra_memory_is_far_below_one_score_matrix():
    n = 4096                                      # one float32 score matrix: 64 MiB
    extra = benchmark.peak_memory(functools.partial(
        benchmark.attention_call, chunked_attention, n, d=16, chunk_size=512))
    model = attnlib.attention_memory_bytes(n, 16, chunk_size=512)["extra"]   # 1.3 MiB
    assert extra < 8 * benchmark.MiB, f"measured {extra / benchmark.MiB:.1f} MiB"
    assert extra < 2 * model + 3 * benchmark.MiB, f"measured {extra / benchmark.MiB:.1f} MiB"


# --- bad input -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, err, match", [
    (dict(chunk_size=0), ValueError, "chunk_size must be >= 1"),
    (dict(chunk_size=2.5), TypeError, "chunk_size must be an int"),
    (dict(chunk_size=True), TypeError, "chunk_size"),
    (dict(scale=float("nan")), ValueError, "scale"),
    (dict(mask=np.ones((5, 6))), TypeError, "mask must be boolean"),
    (dict(mask=np.ones((4, 5), dtype=bool)), ValueError, r"mask of shape \(4, 5\)"),
])
def test_bad_arguments(kwargs, err, match):
    q, k, v = qkv(5, batch=(2,))
    with pytest.raises(err, match=match):
        chunked_attention(q, k, v, **kwargs)


def test_bad_qkv():
    q, k, v = qkv(5, batch=(2,))
    with pytest.raises(ValueError, match="share the feature size d"):
        chunked_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="same length Lk"):
        chunked_attention(q, k, v[:, :4])
    with pytest.raises(TypeError, match="all numpy arrays or all torch tensors"):
        chunked_attention(q, k.numpy(), v)
    with pytest.raises(ValueError, match=r"q must have shape \(\.\.\., Lq, d\)"):
        chunked_attention(q[0, 0], k, v)
    with pytest.raises(TypeError, match="real numbers"):
        chunked_attention(q.to(torch.complex128), k, v)


@pytest.mark.parametrize("make", [torch.as_tensor, np.asarray])
def test_masked_tiles_before_very_negative_scores(make):
    # rows see nothing in the first key tiles, then only scores near -1e3: the running
    # maximum must be the real one, not a stand-in 0, or exp() underflows to 0
    q, k, v = qkv(8, 24, d=4, batch=(1,), seed=12)
    k = k.abs() * 1e3
    q = -q.abs()
    mask = np.ones((8, 24), dtype=bool)
    mask[:, :16] = False
    q, k, v, mask = map(make, (q, k, v, mask))
    got = chunked_attention(q, k, v, mask=mask, chunk_size=8)
    ref = scaled_dot_product_attention(q, k, v, mask=mask)
    assert np.abs(np.asarray(ref)).sum() > 0
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("causal", [False, True])
def test_fast_path_smaller_tiles_for_large_batches(causal):
    # 64 batch entries: the fast path cuts its tiles smaller than chunk_size, squarest first
    from attnlib.chunked import _fast_tile
    assert _fast_tile(1024, (1, 8)) == (1024, 512) and _fast_tile(1024, (1,)) == (1024, 1024)
    assert _fast_tile(1024, (16,)) == (512, 512) and _fast_tile(1024, (4096,)) == (64, 64)
    assert _fast_tile(16, (4096,)) == (16, 16) and _fast_tile(100, (2 ** 20,)) == (64, 64)
    q, k, v = qkv(300, d=8, batch=(8, 8), dtype=torch.float32, seed=13)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(chunked_attention(q, k, v, chunk_size=256, causal=causal), ref,
                               **CHUNKED_TOL[torch.float32])
