"""attnlib.flex: the sparse patterns as flex_attention mask functions, and the compiled
backend exact against dense attention with the same mask."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import attnlib
from attnlib import flex
from attnlib.sparse_masks import bigbird_layout

N = 300                       # not a multiple of flex's 128-position blocks


def evaluate(mask_mod, n):
    """The (n, n) boolean mask a mask function describes, evaluated eagerly."""
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    return mask_mod(0, 0, i, j).expand(n, n).numpy()


# --- the mask functions equal attnlib's masks (no compilation) ------------------------

@pytest.mark.parametrize("window, causal, dilation", [(0, False, 1), (5, False, 1), (5, True, 1),
                                                     (3, False, 4), (3, True, 4), (400, False, 1)])
def test_window_mask_mod(window, causal, dilation):
    np.testing.assert_array_equal(evaluate(flex.window_mask_mod(window, causal, dilation), 50),
                                  attnlib.local_mask(50, window, causal=causal, dilation=dilation))


@pytest.mark.parametrize("glob", [(), (0,), (3, 17, 49)])
def test_longformer_mask_mod(glob):
    np.testing.assert_array_equal(evaluate(flex.longformer_mask_mod(4, glob, 50), 50),
                                  attnlib.longformer_mask(50, 4, list(glob)))


def test_layout_mask_mod():
    layout = bigbird_layout(7, window=1, num_global=1, num_random=2, seed=3)
    rows = tuple(tuple(bool(x) for x in row) for row in layout)
    np.testing.assert_array_equal(evaluate(flex.layout_mask_mod(rows, 8), 50),
                                  attnlib.layout_to_mask(layout, 8, 50, 50))


@pytest.mark.parametrize("stride, causal", [(1, True), (7, True), (7, False), (60, True)])
def test_strided_mask_mod(stride, causal):
    np.testing.assert_array_equal(evaluate(flex.strided_mask_mod(stride, causal), 50),
                                  attnlib.strided_mask(50, stride, causal=causal))


# --- bad backends ------------------------------------------------------------------------

CALLS = {
    "sliding_window_attention": dict(window=2),
    "longformer_attention": dict(window=2, global_tokens=[0]),
    "bigbird_attention": dict(block_size=4),
    "block_sparse_attention": dict(layout=np.ones((3, 3), dtype=bool), block_size=4),
    "strided_attention": dict(stride=3),
}


@pytest.mark.parametrize("name", CALLS)
def test_bad_backend(name):
    fn = getattr(attnlib, name)
    q = torch.randn(1, 12, 4)
    with pytest.raises(ValueError, match=r"backend must be one of \('plain', 'flex'\), got 'cuda'"):
        fn(q, q, q, backend="cuda", **CALLS[name])
    with pytest.raises(TypeError, match="backend 'flex' needs torch tensors, got q of type ndarray"):
        fn(q.numpy(), q.numpy(), q.numpy(), backend="flex", **CALLS[name])


# --- compiled kernels: exact against dense attention with the pattern's mask ------------

needs_flex = pytest.mark.skipif(not flex.flex_available(),
                                reason="flex_attention or a C++ compiler is missing")


def inputs(seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, N, 16, generator=gen) for _ in range(3)]


PATTERNS = [
    ("window", "sliding_window_attention", dict(window=20),
     lambda: attnlib.local_mask(N, 20)),
    ("causal window", "sliding_window_attention", dict(window=20, causal=True),
     lambda: attnlib.local_mask(N, 20, causal=True)),
    ("longformer", "longformer_attention", dict(window=20, global_tokens=[0, 150, 299]),
     lambda: attnlib.longformer_mask(N, 20, [0, 150, 299])),
    ("bigbird", "bigbird_attention", dict(block_size=32, seed=1),
     lambda: attnlib.bigbird_mask(N, 32, seed=1)),
    ("strided", "strided_attention", dict(stride=17),
     lambda: attnlib.strided_mask(N, 17)),
]


@pytest.mark.compile
@needs_flex
@pytest.mark.parametrize("label, name, kwargs, mask", PATTERNS, ids=[p[0] for p in PATTERNS])
def test_flex_backend_equals_dense_attention_with_the_mask(label, name, kwargs, mask):
    q, k, v = inputs(len(label))
    fn = getattr(attnlib, name)
    got = fn(q, k, v, backend="flex", **kwargs)
    want = attnlib.scaled_dot_product_attention(q, k, v, mask=torch.as_tensor(mask()))
    assert got.shape == want.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, fn(q, k, v, **kwargs), rtol=1e-5, atol=1e-5)
    seconds = [s for key, s in flex.first_call_seconds().items() if key[1] == (6, 1, N, 16)]
    assert seconds and all(s > 0 for s in seconds)


@pytest.mark.compile
@needs_flex
def test_flex_block_sparse_rows_without_keys_give_zeros():
    # the same kernel as BigBird's (the layout pattern at the same shapes), an empty layout row
    q, k, v = inputs(7)
    layout = bigbird_layout(10, seed=1)
    layout[4] = False                                   # queries 128..159 attend nothing
    got = attnlib.block_sparse_attention(q, k, v, layout=layout, block_size=32, backend="flex")
    want = attnlib.scaled_dot_product_attention(
        q, k, v, mask=torch.as_tensor(attnlib.layout_to_mask(layout, 32, N, N)))
    assert torch.equal(got[..., 128:160, :], torch.zeros_like(got[..., 128:160, :]))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


LIMIT_SCRIPT = """
import torch, attnlib
from attnlib import flex
flex.RECOMPILE_LIMIT = 2
for n in (40, 48, 56):                      # a new shape each: a new kernel each
    q = torch.randn(1, 1, n, 16)
    try:
        out = attnlib.sliding_window_attention(q, q, q, window=4, backend="flex")
    except RuntimeError as error:
        print(n, error)
    else:
        plain = attnlib.sliding_window_attention(q, q, q, window=4)
        print(n, torch.allclose(out, plain, atol=1e-5))
"""


@pytest.mark.compile
@needs_flex
def test_flex_past_its_kernel_limit_raises_instead_of_running_unfused():
    # torch.compile's own default would switch to an unfused flex_attention, which builds every
    # score, after 8 kernels and say so only in a log line; attnlib's limit raises a clear error.
    # The kernels of a process count, so this runs in a fresh one.
    run = subprocess.run([sys.executable, "-c", LIMIT_SCRIPT], capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines() == [
        "40 True", "48 True",
        "56 backend 'flex' has compiled its limit of 2 kernels (one per shape, dtype and pattern) "
        "in this process; use backend='plain', or raise attnlib.flex.RECOMPILE_LIMIT before the "
        "first flex call"]
