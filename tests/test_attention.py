"""attnlib.scaled_dot_product_attention: equivalence with torch, properties and bad input.

The reference is ``torch.nn.functional.scaled_dot_product_attention``. Tolerances:
float64 inputs must agree to ``atol = rtol = 1e-12``, float32 inputs to
``atol = rtol = 1e-5`` (different summation orders in fused kernels).
Every equivalence test runs on numpy arrays and on torch tensors.
"""

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlib import padding_mask, scaled_dot_product_attention
from tests.arrays import BACKENDS, TOL, as_np, make

sdpa = scaled_dot_product_attention
DTYPES = [np.float64, np.float32]


def qkv(rng, batch=(2, 3), lq=4, lk=5, d=8, dv=6, dtype=np.float64, scale=1.0):
    return tuple((rng.normal(scale=scale, size=(*batch, n, m))).astype(dtype)
                 for n, m in ((lq, d), (lk, d), (lk, dv)))


def torch_ref(q, k, v, mask=None, causal=False, scale=None):
    """torch's SDPA in float64 on the numpy inputs; fully masked rows set to 0."""
    q, k, v = (torch.from_numpy(np.array(a, dtype=np.float64)) for a in (q, k, v))
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    q, k, v = (t.expand(*batch, *t.shape[-2:]) for t in (q, k, v))
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale).numpy()
    keep = torch.from_numpy(np.array(mask, dtype=bool))
    if causal:
        keep = keep & torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=scale)
    return torch.where(keep.any(-1, keepdim=True), out, 0.0).numpy()


def check(out, ref, dtype, like):
    """``out`` has the backend and dtype of ``like`` and matches ``ref`` to the stated tolerance."""
    assert type(out) is type(like)
    assert out.dtype == like.dtype
    np.testing.assert_allclose(as_np(out), ref, rtol=TOL[dtype], atol=TOL[dtype])


# --- equivalence with torch ------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_no_mask(backend, dtype):
    q, k, v = qkv(np.random.default_rng(0), dtype=dtype)
    check(sdpa(*(make(backend, a) for a in (q, k, v))), torch_ref(q, k, v), dtype, make(backend, q))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask_shape", [(5,), (4, 5), (1, 4, 5), (3, 1, 5), (2, 1, 1, 5),
                                        (2, 3, 4, 5), (1, 1, 1, 1)])
def test_boolean_mask_broadcast_shapes(backend, dtype, mask_shape):
    rng = np.random.default_rng(1)
    q, k, v = qkv(rng, dtype=dtype)
    mask = rng.random(mask_shape) < 0.6
    out = sdpa(*(make(backend, a) for a in (q, k, v)), mask=make(backend, mask))
    check(out, torch_ref(q, k, v, np.broadcast_to(mask, (2, 3, 4, 5))), dtype, make(backend, q))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lq, lk", [(4, 4), (3, 7), (7, 3), (1, 6), (6, 1)])
def test_causal_with_lq_not_lk(backend, dtype, lq, lk):
    q, k, v = qkv(np.random.default_rng(2), lq=lq, lk=lk, dtype=dtype)
    args = [make(backend, a) for a in (q, k, v)]
    ref = torch_ref(q, k, v, causal=True)
    check(sdpa(*args, causal=True), ref, dtype, args[0])
    out, w = sdpa(*args, causal=True, return_weights=True)        # plain path too
    check(out, ref, dtype, args[0])
    # top-left alignment: query i sees keys 0..i, so with lq > lk the last rows see all keys
    np.testing.assert_array_equal(as_np(w)[..., :, :] > 0, np.broadcast_to(np.tri(lq, lk, dtype=bool), w.shape))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lq, lk", [(3, 7), (7, 3)])
def test_causal_combined_with_mask(backend, dtype, lq, lk):
    rng = np.random.default_rng(3)
    q, k, v = qkv(rng, lq=lq, lk=lk, dtype=dtype)
    mask = rng.random((2, 1, lq, lk)) < 0.7
    out = sdpa(*(make(backend, a) for a in (q, k, v)), mask=make(backend, mask), causal=True)
    check(out, torch_ref(q, k, v, np.broadcast_to(mask, (2, 3, lq, lk)), causal=True), dtype,
          make(backend, q))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [0.0, 0.05, 1.0, 2.5, -0.7, 3])
def test_custom_scale(backend, dtype, scale):
    q, k, v = qkv(np.random.default_rng(4), dtype=dtype)
    out = sdpa(*(make(backend, a) for a in (q, k, v)), scale=scale)
    check(out, torch_ref(q, k, v, scale=float(scale)), dtype, make(backend, q))


def test_default_scale_is_one_over_sqrt_d_not_one_over_length():
    q, k, v = qkv(np.random.default_rng(5), lq=3, lk=9, d=16)
    out = sdpa(q, k, v)
    np.testing.assert_allclose(out, sdpa(q, k, v, scale=1 / math.sqrt(16)), rtol=1e-15)
    assert not np.allclose(out, sdpa(q, k, v, scale=1 / 9))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_return_weights(backend, dtype):
    rng = np.random.default_rng(6)
    q, k, v = qkv(rng, dtype=dtype)
    mask = rng.random((4, 5)) < 0.6
    mask[1] = False                                            # one query sees nothing
    out, w = sdpa(*(make(backend, a) for a in (q, k, v)), mask=make(backend, mask),
                  return_weights=True)
    check(out, torch_ref(q, k, v, np.broadcast_to(mask, (2, 3, 4, 5))), dtype, make(backend, q))
    assert type(w) is type(out) and w.shape == (2, 3, 4, 5) and w.dtype == out.dtype
    s = torch.from_numpy(q.astype(np.float64)) @ torch.from_numpy(k.astype(np.float64)).mT / math.sqrt(8)
    ref_w = torch.softmax(s.masked_fill(~torch.from_numpy(mask), -torch.inf), dim=-1).nan_to_num(0.0)
    np.testing.assert_allclose(as_np(w), ref_w.numpy(), rtol=TOL[dtype], atol=TOL[dtype])
    assert (as_np(w)[..., ~mask] == 0).all(), "masked keys must get weight exactly 0"
    np.testing.assert_allclose(as_np(w).sum(-1)[..., [0, 2, 3]], 1.0, rtol=TOL[dtype])
    np.testing.assert_allclose(as_np(out), as_np(w) @ v.astype(np.float64), rtol=TOL[dtype], atol=TOL[dtype])


@settings(max_examples=60, deadline=None)
@given(data=st.data(), backend=st.sampled_from(BACKENDS), dtype=st.sampled_from(DTYPES),
       weights=st.booleans(), causal=st.booleans(), use_mask=st.booleans())
def test_random_inputs_match_torch(data, backend, dtype, weights, causal, use_mask):
    draw = data.draw
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    lq, lk, d, dv = (draw(st.integers(1, 6)) for _ in range(4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    q, k, v = qkv(rng, batch, lq, lk, d, dv, dtype=dtype, scale=draw(st.sampled_from([0.1, 1.0, 3.0])))
    # drop leading dims from some inputs: they broadcast
    q, k, v = (a[(0,) * draw(st.integers(0, len(batch)))] for a in (q, k, v))
    full = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    mask_shape = draw(st.sampled_from([(lk,), (lq, lk), (*full, lq, lk), (*full[-1:], 1, lk)]))
    mask = rng.random(mask_shape) < 0.7 if use_mask else None
    scale = draw(st.sampled_from([None, 0.3, 1.7]))
    res = sdpa(*(make(backend, a) for a in (q, k, v)),
               mask=None if mask is None else make(backend, mask), causal=causal, scale=scale,
               return_weights=weights)
    out = res[0] if weights else res
    assert out.shape == (*full, lq, dv)
    ref = torch_ref(q, k, v, None if mask is None else np.broadcast_to(mask, (*full, lq, lk)),
                    causal, scale)
    check(out, ref, dtype, make(backend, q))


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_and_torch_paths_agree(dtype):
    rng = np.random.default_rng(7)
    q, k, v = qkv(rng, dtype=dtype)
    mask = rng.random((2, 1, 4, 5)) < 0.5
    a = sdpa(q, k, v, mask=mask, causal=True)
    t = [torch.from_numpy(x) for x in (q, k, v)]
    b = sdpa(*t, mask=torch.from_numpy(mask), causal=True)                    # fused path
    c, _ = sdpa(*t, mask=torch.from_numpy(mask), causal=True, return_weights=True)  # plain path
    for other in (b, c):
        np.testing.assert_allclose(a, other.numpy(), rtol=TOL[dtype], atol=TOL[dtype])


# --- fully masked rows ----------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_fully_masked_rows_give_zeros(backend):
    q, k, v = qkv(np.random.default_rng(8), batch=(2,), lq=3, lk=4)
    mask = np.array([[True, False, True, False], [False] * 4, [True] * 4])
    for weights in (False, True):
        res = sdpa(*(make(backend, a) for a in (q, k, v)), mask=make(backend, mask),
                   return_weights=weights)
        out = as_np(res[0] if weights else res)
        assert np.isfinite(out).all()
        np.testing.assert_array_equal(out[:, 1], 0.0)
        if weights:
            np.testing.assert_array_equal(as_np(res[1])[:, 1], 0.0)
        np.testing.assert_allclose(out[:, [0, 2]], torch_ref(q, k, v, np.broadcast_to(mask, (2, 3, 4)))[:, [0, 2]],
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weights", [False, True])
def test_fully_masked_rows_have_finite_gradients(weights):
    gen = torch.Generator().manual_seed(9)
    q, k, v = (torch.randn(2, 3, n, 4, generator=gen, dtype=torch.float64, requires_grad=True)
               for n in (3, 4, 4))
    mask = torch.tensor([[True, False, True, False], [False] * 4, [True] * 4])
    res = sdpa(q, k, v, mask=mask, return_weights=weights)
    out = res[0] if weights else res
    out.pow(2).sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[:, :, 1] == 0).all(), "a query that attends nothing gets no gradient"
    # the gradients of the other rows are torch's
    q2, k2, v2 = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    keep = mask | ~mask.any(-1, keepdim=True)
    ref = F.scaled_dot_product_attention(q2, k2, v2, attn_mask=keep)
    torch.where(mask.any(-1, keepdim=True), ref, 0.0).pow(2).sum().backward()
    for a, b in ((q, q2), (k, k2), (v, v2)):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_keys_gives_zeros_and_no_queries_gives_empty(backend):
    q, k, v = (make(backend, np.ones(s)) for s in ((2, 3, 4), (2, 0, 4), (2, 0, 5)))
    out, w = sdpa(q, k, v, return_weights=True)
    assert out.shape == (2, 3, 5) and w.shape == (2, 3, 0)
    assert (as_np(out) == 0).all() and (as_np(sdpa(q, k, v)) == 0).all()
    q, k, v = (make(backend, np.ones(s)) for s in ((2, 0, 4), (2, 3, 4), (2, 3, 5)))
    assert sdpa(q, k, v, causal=True).shape == (2, 0, 5)


def test_padding_mask_makes_output_independent_of_padding():
    rng = np.random.default_rng(10)
    lengths = np.array([3, 5, 1])
    q, k, v = qkv(rng, batch=(3,), lq=2, lk=5)
    out = sdpa(q, k, v, mask=padding_mask(lengths, 5)[:, None, :])
    k2, v2 = k.copy(), v.copy()
    pad = ~padding_mask(lengths, 5)
    k2[pad] = rng.normal(size=k2[pad].shape) * 100
    v2[pad] = rng.normal(size=v2[pad].shape) * 100
    np.testing.assert_allclose(sdpa(q, k2, v2, mask=padding_mask(lengths, 5)[:, None, :]), out,
                               rtol=1e-12, atol=1e-12)
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(out[b], sdpa(q[b], k[b, :n], v[b, :n]), rtol=1e-12, atol=1e-12)


# --- structure ------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lq=st.integers(1, 5), lk=st.integers(1, 5))
def test_permutation_properties(seed, lq, lk):
    """Permuting queries permutes outputs; permuting keys with their values changes nothing."""
    rng = np.random.default_rng(seed)
    q, k, v = qkv(rng, batch=(), lq=lq, lk=lk, d=3, dv=2)
    out = sdpa(q, k, v)
    pq, pk = rng.permutation(lq), rng.permutation(lk)
    np.testing.assert_allclose(sdpa(q[pq], k, v), out[pq], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sdpa(q, k[pk], v[pk]), out, rtol=1e-12, atol=1e-12)


def test_every_query_is_scored_against_every_key():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    k = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    _, w = sdpa(q, k, np.eye(3), scale=1.0, return_weights=True)
    scores = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])            # q_i . k_j for all i, j
    np.testing.assert_allclose(w, np.exp(scores) / np.exp(scores).sum(1, keepdims=True), rtol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_broadcasting(backend):
    rng = np.random.default_rng(11)
    q = rng.normal(size=(2, 3, 4, 8))        # (B, H, Lq, d)
    k = rng.normal(size=(3, 5, 8))           # (H, Lk, d): shared over the batch
    v = rng.normal(size=(5, 6))              # (Lk, dv): shared by everything
    mask = rng.random((2, 1, 1, 5)) < 0.7    # key padding per batch element
    out, w = sdpa(*(make(backend, a) for a in (q, k, v)), mask=make(backend, mask), return_weights=True)
    assert out.shape == (2, 3, 4, 6) and w.shape == (2, 3, 4, 5)
    kb, vb = np.broadcast_to(k, (2, 3, 5, 8)), np.broadcast_to(v, (2, 3, 5, 6))
    ref = torch_ref(q, kb, vb, np.broadcast_to(mask, (2, 3, 4, 5)))
    np.testing.assert_allclose(as_np(out), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(as_np(sdpa(*(make(backend, a) for a in (q, k, v)), mask=make(backend, mask))),
                               ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_dims_only_on_values_and_mask(backend):
    """v and the mask may carry batch dims that q and k do not have."""
    rng = np.random.default_rng(12)
    q, k = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    v, mask = rng.normal(size=(2, 5, 6)), rng.random((2, 3, 5)) < 0.7
    out, w = sdpa(*(make(backend, a) for a in (q, k, v)), mask=make(backend, mask), return_weights=True)
    assert out.shape == (2, 3, 6) and w.shape == (2, 3, 5)
    ref = torch_ref(np.broadcast_to(q, (2, 3, 4)), np.broadcast_to(k, (2, 5, 4)), v, mask)
    np.testing.assert_allclose(as_np(out), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_type_and_dtype_are_kept(backend):
    for dtype in DTYPES:
        q, k, v = qkv(np.random.default_rng(13), dtype=dtype)
        out, w = sdpa(*(make(backend, a) for a in (q, k, v)), return_weights=True)
        like = make(backend, q)
        assert type(out) is type(like) and out.dtype == like.dtype and w.dtype == like.dtype


def test_mask_follows_the_backend_of_q():
    q, k, v = qkv(np.random.default_rng(14))
    m = np.random.default_rng(15).random((4, 5)) < 0.5
    a = sdpa(*(torch.from_numpy(x) for x in (q, k, v)), mask=m)
    b = sdpa(q, k, v, mask=torch.from_numpy(m))
    assert isinstance(a, torch.Tensor) and isinstance(b, np.ndarray)
    np.testing.assert_allclose(a.numpy(), b, rtol=1e-12, atol=1e-12)


def test_integer_inputs_are_promoted():
    q = np.arange(6).reshape(2, 3)
    out = sdpa(q, q, q)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, sdpa(q.astype(float), q.astype(float), q.astype(float)))
    assert sdpa(torch.tensor(q), torch.tensor(q), torch.tensor(q)).dtype == torch.get_default_dtype()


def test_gradients_match_torch():
    gen = torch.Generator().manual_seed(16)
    base = [torch.randn(2, n, 5, generator=gen, dtype=torch.float64) for n in (3, 4, 4)]
    mask = torch.rand(3, 4, generator=gen) < 0.7
    mask[:, 0] = True
    grads = []
    for fn in (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.4),
               lambda q, k, v: sdpa(q, k, v, mask=mask, scale=0.4),
               lambda q, k, v: sdpa(q, k, v, mask=mask, scale=0.4, return_weights=True)[0]):
        ts = [t.clone().requires_grad_(True) for t in base]
        fn(*ts).sin().sum().backward()
        grads.append([t.grad for t in ts])
    for g in grads[1:]:
        for a, b in zip(g, grads[0]):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# --- bad input ------------------------------------------------------------------

def test_feature_size_mismatch():
    with pytest.raises(ValueError, match=r"q of shape \(3, 4\) and k of shape \(5, 6\) must share "
                                         r"the feature size d"):
        sdpa(np.ones((3, 4)), np.ones((5, 6)), np.ones((5, 2)))


def test_key_value_length_mismatch():
    with pytest.raises(ValueError, match=r"k of shape \(5, 4\) and v of shape \(6, 2\) must have "
                                         r"the same length Lk: 5 != 6"):
        sdpa(np.ones((3, 4)), np.ones((5, 4)), np.ones((6, 2)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("shape", [(4,), ()])
def test_fewer_than_two_dims(backend, which, shape):
    args = [np.ones((3, 4)), np.ones((3, 4)), np.ones((3, 4))]
    args[which] = np.ones(shape)
    name = "qkv"[which]
    with pytest.raises(ValueError, match=rf"^{name} must have shape \(\.\.\., .*\), "
                                         rf"got shape {re.escape(str(shape))}"):
        sdpa(*(make(backend, a) for a in args))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mask_shape", [(4,), (3, 4), (2, 5, 4, 6), (7, 1, 1), (2, 2, 4, 6)])
def test_mask_that_cannot_broadcast(backend, mask_shape):
    q, k, v = (make(backend, np.ones(s)) for s in ((2, 4, 8), (2, 6, 8), (2, 6, 3)))
    with pytest.raises(ValueError, match=rf"mask of shape {re.escape(str(mask_shape))} cannot "
                                         r"broadcast to shape \(2, 4, 6\)"):
        sdpa(q, k, v, mask=make(backend, np.ones(mask_shape, dtype=bool)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mask", [np.ones((3, 3)), np.ones((3, 3), dtype=np.int64),
                                  np.zeros((3, 3), dtype=np.float32)])
def test_non_boolean_mask(backend, mask):
    q = make(backend, np.ones((3, 4)))
    with pytest.raises(TypeError, match=r"mask must be boolean \(True = keep\), got dtype"):
        sdpa(q, q, q, mask=make(backend, mask))


@pytest.mark.parametrize("which", [0, 1, 2])
def test_mixed_numpy_and_torch(which):
    args = [np.ones((3, 4)), np.ones((3, 4)), np.ones((3, 4))]
    args[which] = torch.ones(3, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match="q, k and v must be all numpy arrays or all torch tensors"):
        sdpa(*args)


def test_mixed_torch_dtypes():
    with pytest.raises(TypeError, match=r"q, k and v must share one dtype, got torch.float32, "
                                        r"torch.float64, torch.float32"):
        sdpa(torch.ones(3, 4), torch.ones(3, 4, dtype=torch.float64), torch.ones(3, 4))


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_scale(scale):
    with pytest.raises(ValueError, match=r"scale must be finite, got"):
        sdpa(np.ones((3, 4)), np.ones((3, 4)), np.ones((3, 4)), scale=scale)


@pytest.mark.parametrize("scale", ["0.5", True, np.ones(2), torch.tensor(0.5)])
def test_scale_of_wrong_type(scale):
    with pytest.raises(TypeError, match=r"^scale must be a real number"):
        sdpa(np.ones((3, 4)), np.ones((3, 4)), np.ones((3, 4)), scale=scale)


def test_batch_dims_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"leading \(batch\) dimensions of q \(2, 3, 4\), k \(3, 5, 4\) "
                                         r"and v \(3, 5, 4\) do not broadcast"):
        sdpa(np.ones((2, 3, 4)), np.ones((3, 5, 4)), np.ones((3, 5, 4)))


@pytest.mark.parametrize("bad", ["abc", np.array([[True, False]]), np.array([[1 + 1j]]), object()])
def test_non_numeric_inputs(bad):
    with pytest.raises(TypeError, match=r"^q must"):
        sdpa(bad, np.ones((2, 2)), np.ones((2, 2)))
