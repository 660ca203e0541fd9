"""The backward pass of chunked_attention: exact gradients, nothing of size Lq x Lk saved,
and the extra memory of a training step measured in a fresh process."""

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnlib import benchmark, chunked_attention, scaled_dot_product_attention
from attnlib.chunked import ChunkedAttentionFunction
from tests.arrays import CHUNKED_TOL, qkv_tensors

qkv = functools.partial(qkv_tensors, requires_grad=True)


def grads(fn, q, k, v, d_out):
    """Output and the gradients of <out, d_out> for q, k, v, through ``fn``."""
    out = fn(q, k, v)
    return (out.detach(), *torch.autograd.grad(out, (q, k, v), d_out))


def dense(q, k, v, *, causal=False, mask=None, scale=None):
    """Dense attention through autograd: the reference gradients."""
    return scaled_dot_product_attention(q, k, v, causal=causal, mask=mask, scale=scale)


def assert_same_grads(q, k, v, *, chunk, dtype=torch.float64, **kwargs):
    gen = torch.Generator().manual_seed(99)
    d_out = torch.randn(*torch.broadcast_shapes(q.shape[:-2], v.shape[:-2]), q.shape[-2],
                        v.shape[-1], generator=gen, dtype=dtype)
    want = grads(functools.partial(dense, **kwargs), q, k, v, d_out)
    got = grads(functools.partial(chunked_attention, chunk_size=chunk, **kwargs), q, k, v, d_out)
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want):
        assert a.shape == b.shape, name
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a, b, **CHUNKED_TOL[dtype], msg=lambda m: f"{name}: {m}")


# --- exact gradients --------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n, chunk", [(1, 4), (7, 3), (64, 16), (100, 32), (257, 64), (50, 1024)])
def test_gradients_equal_dense_autograd(n, chunk, causal, dtype):
    q, k, v = qkv(n, dtype=dtype, seed=n)
    assert_same_grads(q, k, v, chunk=chunk, causal=causal, dtype=dtype)



def test_gradients_when_scores_drift_far_along_the_keys():
    # later key blocks score far higher: the forward pass moves its shift, and the row
    # log-sum-exp it saves must still be exact. (In float32, scores of 250 carry rounding
    # errors of 1e-5 that dense float32 attention shares: float64 shows the algorithm.)
    q, k, v = (t.detach() for t in qkv(40, 200, seed=11))
    q[..., 0] = 10.0
    k[..., 0] = 0.5 * torch.arange(200, dtype=torch.float64)
    assert_same_grads(*(t.requires_grad_() for t in (q, k, v)), chunk=16)


def test_gradients_equal_torch_sdpa_float32_long():
    # many tiles per row and per column: the sums over tiles must stay within 1e-5
    q, k, v = qkv(1100, d=64, batch=(1, 2), dtype=torch.float32, seed=1)
    d_out = torch.randn(1, 2, 1100, 64, generator=torch.Generator().manual_seed(2))
    for causal in (False, True):
        want = grads(functools.partial(F.scaled_dot_product_attention, is_causal=causal),
                     q, k, v, d_out)
        got = grads(functools.partial(chunked_attention, chunk_size=128, causal=causal),
                    q, k, v, d_out)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **CHUNKED_TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask_shape", [(40,), (33, 40), (3, 1, 40), (2, 3, 33, 40), (2, 1, 33, 1)])
def test_gradients_with_masks(mask_shape, causal, dtype):
    q, k, v = qkv(33, 40, dv=5, dtype=dtype, seed=4)
    mask = torch.rand(mask_shape, generator=torch.Generator().manual_seed(1)) > 0.4
    assert_same_grads(q, k, v, chunk=7, causal=causal, mask=mask, dtype=dtype)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n, m", [(10, 37), (37, 10), (1, 50), (50, 1)])
def test_gradients_different_lengths_scale_and_value_width(n, m, causal):
    q, k, v = qkv(n, m, d=8, dv=3, seed=n + m)
    assert_same_grads(q, k, v, chunk=8, causal=causal, scale=0.7)


def test_gradients_with_broadcast_batch():
    # q has batch (2, 1), k and v (1, 3): the gradients come back in each input's own shape
    q = qkv(20, batch=(2, 1))[0]
    _, k, v = qkv(20, batch=(1, 3), seed=1)
    assert_same_grads(q, k, v, chunk=6, causal=True)
    got = torch.autograd.grad(chunked_attention(q, k, v, chunk_size=6).sum(), (q, k, v))
    assert [g.shape for g in got] == [q.shape, k.shape, v.shape]


def test_fully_masked_rows_have_zero_gradients():
    q, k, v = qkv(12, batch=(2,), seed=6)
    mask = torch.ones(2, 12, 12, dtype=torch.bool)
    mask[0, 3] = False                       # query 3 of the first sequence sees nothing
    mask[1, :, :5] = False                   # with causal, rows 0..4 of the second see nothing
    assert_same_grads(q, k, v, chunk=4, causal=True, mask=mask)
    dq, = torch.autograd.grad(chunked_attention(q, k, v, mask=mask, chunk_size=4).sum(), (q,))
    assert torch.equal(dq[0, 3], torch.zeros(16, dtype=torch.float64))


def test_no_keys_at_all():
    q, k, v = qkv(9, 0, seed=7)
    out = chunked_attention(q, k, v, chunk_size=4)
    dq, dk, dv = torch.autograd.grad(out.sum(), (q, k, v))
    assert torch.equal(dq, torch.zeros_like(q)) and dk.shape == k.shape and dv.shape == v.shape


def test_gradcheck():
    q, k, v = qkv(11, 9, d=3, dv=2, batch=(2,), seed=8)
    keep = torch.rand(11, 9, generator=torch.Generator().manual_seed(3)) > 0.3
    for causal in (False, True):
        assert torch.autograd.gradcheck(
            lambda a, b, c: ChunkedAttentionFunction.apply(a, b, c, keep, causal, 0.5, 4),
            (q, k, v))


def test_only_takes_the_autograd_function_when_recording():
    q, k, v = qkv(20, seed=9)
    out = chunked_attention(q, k, v, chunk_size=8)
    assert type(out.grad_fn).__name__ == "ChunkedAttentionFunctionBackward"
    with torch.no_grad():
        assert chunked_attention(q, k, v, chunk_size=8).grad_fn is None


# --- what the forward pass keeps for the backward pass ---------------------------------

@pytest.mark.parametrize("causal", [False, True])
def test_saves_only_inputs_output_and_log_sum_exp(causal):
    n, d = 300, 8
    q, k, v = qkv(n, d=d, batch=(1,), seed=10)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = chunked_attention(q, k, v, chunk_size=64, causal=causal)
    # q, k, v and out of shape (1, n, d), and the row log-sum-exp of shape (1, n, 1)
    assert sorted(tuple(t.shape) for t in saved) == [(1, n, 1)] + [(1, n, d)] * 4
    lse = next(t for t in saved if t.shape[-1] == 1)
    s = (q @ k.transpose(-1, -2) / np.sqrt(d)).detach()
    if causal:
        s = s.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), -torch.inf)
    torch.testing.assert_close(lse, torch.logsumexp(s, -1, keepdim=True), rtol=1e-12, atol=1e-12)
    assert any(t is out or torch.equal(t, out) for t in saved)


# --- memory of a training step, measured in a fresh process ------------------------------

def warmed_training_call(n, d):
    """A training step at ``n``, after one at n=256 has loaded autograd's lazy state
    (about 50 MiB the first backward pass of a process allocates once), so that the
    long step need not run twice."""
    benchmark.training_call(chunked_attention, 256, d=d)()
    return benchmark.training_call(chunked_attention, n, d=d)


def test_training_step_extra_memory_at_16k_is_below_a_sixteenth_of_the_score_matrix():
    n, d = 16384, 64
    dense_scores = n * n * 4                                   # one float32 score matrix: 1 GiB
    extra = benchmark.peak_memory(functools.partial(warmed_training_call, n, d), warmup=0)
    # the gradients dq, dk, dv (12 MiB) count: they are the step's output
    assert extra <= dense_scores / 16, f"measured {extra / benchmark.MiB:.1f} MiB"


def test_flop_counter_sees_every_product_forward_and_backward():
    # forward: q k^T and P V, 4 n^2 d per head; backward: the five products of FlashAttention-2
    # (S again, dV, dP, dQ, dK), 10 n^2 d. The in-place accumulations must be counted too.
    from torch.utils.flop_counter import FlopCounterMode
    n, d, heads = 300, 16, 2
    q, k, v = (t.detach().float().requires_grad_() for t in qkv(n, d=d, batch=(1, heads)))
    forward, backward = FlopCounterMode(display=False), FlopCounterMode(display=False)
    with forward:
        out = chunked_attention(q, k, v, chunk_size=64)
    with backward:
        out.sum().backward()
    assert forward.get_total_flops() == 4 * n * n * d * heads
    assert backward.get_total_flops() == 10 * n * n * d * heads
