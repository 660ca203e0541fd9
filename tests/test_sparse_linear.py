"""The two approximations: linear attention (elu + 1) and Linformer, against their definitions."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import attnlib
from attnlib import elu_feature_map, linear_attention, linformer_attention, linformer_projection

TIGHT = dict(rtol=1e-11, atol=1e-12)


def quadratic_linear_attention(q, k, v, causal):
    """The definition, O(n^2): A = phi(q) phi(k)^T (lower triangle if causal), out = A v / A 1."""
    phi = lambda x: np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))
    a = phi(q) @ np.swapaxes(phi(k), -1, -2)
    if causal:
        a = np.tril(a)
    return (a @ v) / a.sum(axis=-1, keepdims=True)


def qkv(shape, dv=None, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    dv = shape[-1] if dv is None else dv
    return (scale * rng.normal(size=shape), scale * rng.normal(size=shape),
            rng.normal(size=(*shape[:-1], dv)))


# --- linear attention ---------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 150), chunk=st.sampled_from([1, 2, 7, 16, 64, 200]), causal=st.booleans(),
       seed=st.integers(0, 2**16))
def test_linear_attention_equals_its_quadratic_definition(n, chunk, causal, seed):
    q, k, v = qkv((2, n, 5), dv=3, seed=seed)
    want = quadratic_linear_attention(q, k, v, causal)
    got = linear_attention(q, k, v, causal=causal, chunk_size=chunk)
    assert isinstance(got, np.ndarray) and got.shape == (2, n, 3)
    np.testing.assert_allclose(got, want, **TIGHT)
    got_t = linear_attention(*(torch.from_numpy(x) for x in (q, k, v)), causal=causal,
                             chunk_size=chunk)
    assert isinstance(got_t, torch.Tensor)
    np.testing.assert_allclose(got_t.numpy(), want, **TIGHT)


def test_causal_rows_only_see_the_past():
    q, k, v = qkv((40, 4), seed=1)
    out = linear_attention(q, k, v, causal=True, chunk_size=8)
    v2 = v.copy()
    v2[25:] += 100.0                                  # change the future of row 24
    np.testing.assert_allclose(linear_attention(q, k, v2, causal=True, chunk_size=8)[:25], out[:25],
                               **TIGHT)
    # row i equals non-causal linear attention over the first i + 1 positions
    for i in (0, 7, 8, 39):
        np.testing.assert_allclose(out[i], linear_attention(q[i:i + 1], k[:i + 1], v[:i + 1])[0],
                                   **TIGHT)


def test_identical_keys_give_the_mean_of_the_values():
    # with one key repeated, softmax attention and linear attention both average the values
    rng = np.random.default_rng(2)
    q, v = rng.normal(size=(12, 4)), rng.normal(size=(12, 3))
    k = np.tile(rng.normal(size=(1, 4)), (12, 1))
    np.testing.assert_allclose(linear_attention(q, k, v), np.tile(v.mean(0), (12, 1)), **TIGHT)
    np.testing.assert_allclose(linear_attention(q, k, v), attnlib.scaled_dot_product_attention(q, k, v),
                               **TIGHT)
    prefix_means = np.cumsum(v, axis=0) / np.arange(1, 13)[:, None]
    np.testing.assert_allclose(linear_attention(q, k, v, causal=True), prefix_means, **TIGHT)


def test_linear_attention_is_not_softmax_attention():
    q, k, v = qkv((64, 8), seed=3, scale=2.0)
    gap = np.abs(linear_attention(q, k, v) - attnlib.scaled_dot_product_attention(q, k, v)).max()
    assert gap > 0.1


def test_float32_and_gradients():
    q, k, v = (torch.tensor(x, dtype=torch.float32) for x in qkv((2, 33, 4), seed=4))
    out = linear_attention(q, k, v, causal=True, chunk_size=8)
    assert out.dtype == torch.float32
    want = quadratic_linear_attention(*(x.double().numpy() for x in (q, k, v)), True)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)
    q64, k64, v64 = (x.double().requires_grad_(True) for x in (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: linear_attention(a, b, c, causal=True, chunk_size=5),
                                    (q64[:, :9], k64[:, :9], v64[:, :9]))


def test_elu_feature_map():
    x = np.linspace(-30, 30, 121)
    phi = elu_feature_map(x)
    assert (phi > 0).all()
    np.testing.assert_allclose(phi, np.where(x > 0, x + 1, np.exp(x)), rtol=1e-15, atol=0)
    np.testing.assert_allclose(phi, (F.elu(torch.from_numpy(x)) + 1).numpy(), rtol=1e-15, atol=1e-15)
    phi_t = elu_feature_map(torch.from_numpy(x))
    assert isinstance(phi_t, torch.Tensor)
    np.testing.assert_allclose(phi_t.numpy(), phi, rtol=1e-15, atol=0)


@pytest.mark.parametrize("call, error, words", [
    (lambda q, k, v: linear_attention(q, k[:5], v[:5], causal=True), ValueError, "one key per query"),
    (lambda q, k, v: linear_attention(q, k, v, causal=True, chunk_size=0), ValueError, "chunk_size"),
    (lambda q, k, v: linear_attention(q, k[:, :2], v), ValueError, "feature size d"),
    (lambda q, k, v: elu_feature_map(np.array(["a"])), TypeError, "real numbers"),
])
def test_linear_attention_bad_input(call, error, words):
    with pytest.raises(error) as info:
        call(*qkv((8, 4)))
    assert words in str(info.value)


# --- Linformer ---------------------------------------------------------------------------

def test_linformer_is_attention_over_projected_keys():
    q, k, v = qkv((2, 20, 4), dv=3, seed=5)
    e, f = linformer_projection(20, 6, seed=1), linformer_projection(20, 6, seed=2)
    want = attnlib.scaled_dot_product_attention(q, e @ k, f @ v)
    np.testing.assert_allclose(linformer_attention(q, k, v, proj_k=e, proj_v=f), want, **TIGHT)
    got_t = linformer_attention(*(torch.from_numpy(x) for x in (q, k, v)), proj_k=e, proj_v=f)
    np.testing.assert_allclose(got_t.numpy(), want, **TIGHT)
    ref = F.scaled_dot_product_attention(torch.from_numpy(q), torch.from_numpy(e @ k), torch.from_numpy(f @ v))
    np.testing.assert_allclose(ref.numpy(), want, **TIGHT)


def test_linformer_with_the_identity_is_exact():
    q, k, v = qkv((2, 16, 4), seed=6)
    np.testing.assert_allclose(linformer_attention(q, k, v, proj_k=np.eye(16)),
                               attnlib.scaled_dot_product_attention(q, k, v), **TIGHT)


def test_linformer_exact_when_keys_are_repeated_blocks():
    # keys and values constant on 4 segments: averaging each segment loses nothing, since a
    # segment of m equal keys contributes m e^s v, the same as one key with score s + log m
    rng = np.random.default_rng(7)
    q = rng.normal(size=(10, 4))
    ks, vs = rng.normal(size=(4, 4)), rng.normal(size=(4, 3))
    seg = np.repeat(np.arange(4), 5)                        # 20 positions, 4 segments of 5
    k, v = ks[seg], vs[seg]
    e = np.eye(4)[seg].T                                     # (4, 20): sums each segment
    out = linformer_attention(q, k, v, proj_k=e / 5.0)      # mean of each segment
    full = attnlib.scaled_dot_product_attention(q, k, v)
    np.testing.assert_allclose(out, full, **TIGHT)


def test_linformer_projection():
    p = linformer_projection(2000, 50, seed=3)
    assert p.shape == (50, 2000) and p.dtype == np.float64
    np.testing.assert_array_equal(p, linformer_projection(2000, 50, seed=3))
    assert abs(p.var() * 2000 - 1) < 0.05                    # entries N(0, 1/n)
    k = np.random.default_rng(4).normal(size=(2000, 16))
    assert abs((p @ k).var() - k.var()) < 0.15                # a projected key has the variance of a key


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(proj_k=np.ones((3, 9))), ValueError, "proj_k must have shape (r, n) = (r, 10)"),
    (dict(proj_k=np.ones(10)), ValueError, "proj_k must have shape"),
    (dict(proj_k=np.ones((3, 10)), proj_v=np.ones((4, 10))), ValueError, "the same r"),
    (dict(proj_k=torch.ones(3, 10)), TypeError, "proj_k must be a numpy array"),
    (dict(proj_k=np.ones((3, 10), dtype=bool)), TypeError, "proj_k must hold real numbers"),
])
def test_linformer_bad_input(kwargs, error, words):
    with pytest.raises(error) as info:
        linformer_attention(*qkv((10, 4)), **kwargs)
    assert words in str(info.value)
