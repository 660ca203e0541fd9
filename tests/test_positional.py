"""attnlib.positional: sinusoidal encoding, RoPE and ALiBi.

References: the formulas computed directly (loops, complex numbers), the code of
Hugging Face transformers' LLaMA (RoPE, "rotate half" layout) and BLOOM (ALiBi),
both used offline with random tensors and no weights.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.models.bloom.modeling_bloom import _get_alibi_slopes, build_alibi_tensor
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from attnlib import (alibi_bias, alibi_slopes, apply_rope, causal_mask, sinusoidal_encoding,
                     softmax)
from tests.arrays import BACKENDS, as_np, make



# --- sinusoidal_encoding --------------------------------------------------------

@pytest.mark.parametrize("n, d", [(1, 1), (5, 2), (7, 6), (6, 7), (50, 16), (3, 33)])
def test_sinusoidal_formula(n, d):
    pe = sinusoidal_encoding(n, d)
    assert isinstance(pe, np.ndarray) and pe.dtype == np.float64 and pe.shape == (n, d)
    for p in range(n):
        for c in range(d):
            i = c // 2                                   # column 2i is a sine, 2i + 1 a cosine
            angle = p / 10000 ** (2 * i / d)
            want = math.sin(angle) if c % 2 == 0 else math.cos(angle)
            assert abs(pe[p, c] - want) < 1e-12, (p, c)


def test_sinusoidal_known_values():
    pe = sinusoidal_encoding(3, 4)
    np.testing.assert_allclose(pe[0], [0, 1, 0, 1], atol=0)
    np.testing.assert_allclose(pe[1], [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)], rtol=1e-15)
    np.testing.assert_allclose(pe[2, :2], [math.sin(2), math.cos(2)], rtol=1e-15)


def test_sinusoidal_matches_the_common_torch_formula():
    """The exp/log form found in many torch codebases, in float64."""
    n, d = 64, 32
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(10000.0) / d))
    ref = torch.zeros(n, d, dtype=torch.float64)
    ref[:, 0::2], ref[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    np.testing.assert_allclose(sinusoidal_encoding(n, d), ref.numpy(), rtol=1e-12, atol=1e-12)


def test_sinusoidal_base_and_odd_width():
    np.testing.assert_allclose(sinusoidal_encoding(4, 2, base=1.0)[:, 0], np.sin(np.arange(4)))
    pe = sinusoidal_encoding(10, 5)
    np.testing.assert_allclose(pe[:, 4], np.sin(np.arange(10) / 10000 ** (4 / 5)), rtol=1e-13)
    assert pe.shape == (10, 5)
    assert sinusoidal_encoding(0, 4).shape == (0, 4)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), half=st.integers(1, 16))
def test_sinusoidal_bounded_and_unit_pairs(n, half):
    pe = sinusoidal_encoding(n, 2 * half)
    assert np.abs(pe).max() <= 1.0
    np.testing.assert_allclose(pe[:, 0::2] ** 2 + pe[:, 1::2] ** 2, 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(pe, axis=1), math.sqrt(half), rtol=1e-12)


def offset_matrix(k, d, base=10000.0):
    """Block-diagonal rotation M_k with PE[p + k] = M_k @ PE[p] (even d)."""
    m = np.zeros((d, d))
    for i in range(d // 2):
        a = k / base ** (2 * i / d)
        m[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]
    return m


@settings(max_examples=40, deadline=None)
@given(k=st.integers(-20, 20), half=st.integers(1, 8))
def test_sinusoidal_linear_offset_property(k, half):
    """PE[p + k] is a fixed linear map of PE[p], the same for every p."""
    d = 2 * half
    pe = sinusoidal_encoding(60, d)
    m = offset_matrix(k, d)
    p = np.arange(max(0, -k), min(60, 60 - k))
    np.testing.assert_allclose(pe[p] @ m.T, pe[p + k], atol=1e-10)
    # and the map is found by least squares from the table alone
    fit, *_ = np.linalg.lstsq(pe[p], pe[p + k], rcond=None)
    np.testing.assert_allclose(pe[p] @ fit, pe[p + k], atol=1e-8)


@settings(max_examples=30, deadline=None)
@given(half=st.integers(1, 16))
def test_sinusoidal_dot_product_depends_on_distance_only(half):
    d = 2 * half
    pe = sinusoidal_encoding(40, d)
    gram = pe @ pe.T
    omega = 10000.0 ** (-np.arange(0, d, 2) / d)
    for p in range(40):
        for q in range(40):
            assert abs(gram[p, q] - np.cos((p - q) * omega).sum()) < 1e-10


@pytest.mark.parametrize("args, exc, message", [
    ((-1, 4), ValueError, "n_positions must be >= 0"),
    ((4, 0), ValueError, "d_model must be >= 1"),
    ((4.0, 4), TypeError, "n_positions must be an int"),
    ((4, "8"), TypeError, "d_model must be an int"),
    ((4, 4, 0.0), ValueError, "base must be a finite number > 0"),
    ((4, 4, float("inf")), ValueError, "base must be a finite number > 0"),
    ((4, 4, "1e4"), TypeError, "base must be a positive number"),
])
def test_sinusoidal_bad_input(args, exc, message):
    with pytest.raises(exc, match=message):
        sinusoidal_encoding(*args)


# --- apply_rope -----------------------------------------------------------------

def rope_complex(x, positions, base=10000.0):
    """Direct reference: each pair (x[2i], x[2i+1]) as the complex number x[2i] + 1j x[2i+1],
    multiplied by exp(1j * p * base**(-2i/d)). Numpy, float64/complex128."""
    x = np.asarray(x, dtype=np.float64)
    d = x.shape[-1]
    z = x[..., 0::2] + 1j * x[..., 1::2]
    theta = base ** (-np.arange(0, d, 2) / d)
    z = z * np.exp(1j * np.asarray(positions, dtype=np.float64)[..., None] * theta)
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(5, 2), (7, 8), (2, 3, 6, 16)])
def test_rope_matches_complex_rotation(backend, shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    out = apply_rope(make(backend, x))
    assert type(out) is type(make(backend, x)) and out.shape == x.shape
    np.testing.assert_allclose(as_np(out), rope_complex(x, np.arange(shape[-2])), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rope_positions_base_and_float_positions(backend):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 5, 8))
    pos = rng.integers(0, 1000, size=(2, 1, 5))                   # per batch element, shared by heads
    out = apply_rope(make(backend, x), make(backend, pos), base=500.0)
    np.testing.assert_allclose(as_np(out), rope_complex(x, np.broadcast_to(pos, (2, 3, 5)), 500.0),
                               rtol=1e-10, atol=1e-10)
    fpos = np.array([0.5, 1.25, 2.0, 7.75, 100.5])
    np.testing.assert_allclose(as_np(apply_rope(make(backend, x), fpos)), rope_complex(x, fpos),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(as_np(apply_rope(make(backend, x), [0] * 5)), x)   # position 0: identity


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rope_keeps_type_dtype_and_norms(backend, dtype):
    x = np.random.default_rng(2).normal(size=(4, 9, 12)).astype(dtype)
    out = apply_rope(make(backend, x), np.arange(9) * 37)
    like = make(backend, x)
    assert type(out) is type(like) and out.dtype == like.dtype
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(np.linalg.norm(as_np(out), axis=-1), np.linalg.norm(x, axis=-1), rtol=tol)
    # each pair keeps its own norm too: a rotation acts within each pair
    pairs = lambda a: a[..., 0::2] ** 2 + a[..., 1::2] ** 2
    np.testing.assert_allclose(pairs(as_np(out)), pairs(x), rtol=10 * tol, atol=10 * tol)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 2000), n=st.integers(0, 2000), shift=st.integers(-500, 500),
       half=st.integers(1, 12), seed=st.integers(0, 2**32 - 1), backend=st.sampled_from(BACKENDS))
def test_rope_scores_depend_only_on_the_offset(m, n, shift, half, seed, backend):
    rng = np.random.default_rng(seed)
    q, k = rng.normal(size=(2, 1, 2 * half))
    score = lambda a, b: float(as_np(apply_rope(make(backend, q), [a]) @ apply_rope(make(backend, k), [b]).T)[0, 0])
    s = score(m, n)
    if m + shift >= 0 and n + shift >= 0:
        assert abs(score(m + shift, n + shift) - s) < 1e-9 * (1 + abs(s))
    # and equals q rotated by (m - n) against the unrotated k
    assert abs(float(as_np(apply_rope(make(backend, q), [m - n]) @ make(backend, k).T)[0, 0]) - s) < 1e-9 * (1 + abs(s))


def test_rope_score_matrix_is_toeplitz():
    """All pairs (i, j) at once: scores of a repeated query/key depend on j - i only."""
    rng = np.random.default_rng(3)
    q, k = rng.normal(size=(2, 16))
    L = 12
    s = apply_rope(np.tile(q, (L, 1))) @ apply_rope(np.tile(k, (L, 1))).T
    for off in range(-L + 1, L):
        diag = np.diagonal(s, offset=off)
        np.testing.assert_allclose(diag, diag[0], rtol=1e-10, atol=1e-10)


def hf_permutation(d):
    """The reordering Hugging Face's LLaMA conversion applies to each head's q/k features:
    view as (d/2, 2), transpose to (2, d/2), flatten -> [0, 2, 4, ..., 1, 3, 5, ...]."""
    return torch.arange(d).view(d // 2, 2).transpose(0, 1).reshape(d)


@pytest.mark.parametrize("d", [2, 8, 64])
def test_rope_matches_hugging_face_llama_after_the_standard_permutation(d):
    gen = torch.Generator().manual_seed(4)
    B, H, L = 2, 3, 40
    q, k = (torch.randn(B, H, L, d, generator=gen) for _ in range(2))
    position_ids = torch.arange(L).expand(B, L)
    # cos/sin exactly as LlamaRotaryEmbedding builds them: float32 angles, halves concatenated
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, d, 2, dtype=torch.float) / d))
    freqs = position_ids[..., None].float() * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    perm = hf_permutation(d)
    q_hf, k_hf = apply_rotary_pos_emb(q[..., perm], k[..., perm], emb.cos(), emb.sin())
    # float32 angles in transformers: agreement to float32 precision
    torch.testing.assert_close(q_hf, apply_rope(q)[..., perm], rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(k_hf, apply_rope(k)[..., perm], rtol=1e-5, atol=2e-5)


def test_rope_matches_llama_rotary_embedding_module():
    """The transformers module itself (tiny config, random init, nothing downloaded)."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
    d = 16
    config = LlamaConfig(hidden_size=4 * d, num_attention_heads=4, max_position_embeddings=64)
    rotary = LlamaRotaryEmbedding(config)
    x = torch.randn(1, 4, 10, d, generator=torch.Generator().manual_seed(5))
    cos, sin = rotary(x, torch.arange(10)[None])
    perm = hf_permutation(d)
    q_hf, _ = apply_rotary_pos_emb(x[..., perm], x[..., perm], cos, sin)
    torch.testing.assert_close(q_hf, apply_rope(x)[..., perm], rtol=1e-5, atol=2e-5)


def test_rope_numpy_and_torch_agree_and_torch_is_differentiable():
    x = np.random.default_rng(6).normal(size=(3, 7, 10))
    xt = torch.from_numpy(x).requires_grad_(True)
    out = apply_rope(xt, torch.arange(7) + 3)
    np.testing.assert_allclose(out.detach().numpy(), apply_rope(x, np.arange(7) + 3), rtol=1e-14, atol=1e-14)
    (out ** 2).sum().backward()                  # a rotation keeps the norm: d/dx |R x|^2 = 2x
    np.testing.assert_allclose(xt.grad.numpy(), 2 * x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x, kwargs, exc, message", [
    (np.ones((4, 5)), {}, ValueError, r"x must have an even feature size d .* got shape \(4, 5\) with d = 5"),
    (np.ones(6), {}, ValueError, r"x must have shape \(\.\.\., L, d\), got shape \(6,\)"),
    (np.ones((4, 6)), {"positions": np.arange(5)}, ValueError,
     r"positions of shape \(5,\) cannot broadcast to the token shape \(\.\.\., L\) = \(4,\)"),
    (np.ones((2, 4, 6)), {"positions": np.zeros((3, 4))}, ValueError, r"positions of shape \(3, 4\)"),
    (np.ones((4, 6)), {"positions": 3}, ValueError, r"positions of shape \(\) cannot broadcast"),
    (np.ones((2, 6)), {"positions": [0.0, np.nan]}, ValueError, "positions must be finite"),
    (np.ones((2, 6)), {"positions": ["a", "b"]}, TypeError, "positions must hold real numbers"),
    (np.ones((2, 6)), {"base": -1.0}, ValueError, "base must be a finite number > 0"),
    (np.ones((2, 6), dtype=bool), {}, TypeError, "x must hold real numbers"),
    (torch.ones(2, 6, dtype=torch.bool), {}, TypeError, "x must hold real numbers"),
])
def test_rope_bad_input(x, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        apply_rope(x, **kwargs)


# --- ALiBi ----------------------------------------------------------------------

def paper_slopes(n):
    """The slope rule of the ALiBi paper's reference code, written out independently."""
    def power_of_2(n):
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]
    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + paper_slopes(2 * closest)[0::2][: n - closest]


def test_alibi_slopes_for_8_heads():
    np.testing.assert_array_equal(alibi_slopes(8), [2.0 ** -h for h in range(1, 9)])


def test_alibi_slopes_for_12_heads():
    want = [2.0 ** -h for h in range(1, 9)] + [2.0 ** -0.5, 2.0 ** -1.5, 2.0 ** -2.5, 2.0 ** -3.5]
    np.testing.assert_allclose(alibi_slopes(12), want, rtol=1e-15)


def test_alibi_slopes_small_counts():
    np.testing.assert_array_equal(alibi_slopes(1), [2.0 ** -8])
    np.testing.assert_array_equal(alibi_slopes(2), [2.0 ** -4, 2.0 ** -8])
    np.testing.assert_allclose(alibi_slopes(3), [2.0 ** -4, 2.0 ** -8, 2.0 ** -2], rtol=1e-15)
    np.testing.assert_array_equal(alibi_slopes(16), [2.0 ** (-h / 2) for h in range(1, 17)])


@pytest.mark.parametrize("n", range(1, 65))
def test_alibi_slopes_match_the_paper_rule_and_bloom(n):
    s = alibi_slopes(n)
    assert s.shape == (n,) and s.dtype == np.float64
    np.testing.assert_allclose(s, paper_slopes(n), rtol=1e-13)
    np.testing.assert_allclose(s, _get_alibi_slopes(n, torch.device("cpu")).double().numpy(), rtol=1e-6)
    assert len(set(s.tolist())) == n and (s > 0).all() and (s < 1).all()


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32])
def test_alibi_slopes_power_of_two_are_geometric(n):
    s = alibi_slopes(n)
    np.testing.assert_allclose(s[1:] / s[:-1], s[0], rtol=1e-13)
    np.testing.assert_allclose(s[-1], 2.0 ** -8, rtol=1e-15)


def test_alibi_bias_values():
    b = alibi_bias(2, 3, 4)
    assert b.shape == (2, 3, 4) and b.dtype == np.float64
    dist = np.array([[0, 1, 2, 3], [1, 0, 1, 2], [2, 1, 0, 1]])
    np.testing.assert_array_equal(b[0], -dist / 16)
    np.testing.assert_array_equal(b[1], -dist / 256)
    assert alibi_bias(4, 5).shape == (4, 5, 5)
    assert alibi_bias(3, 0, 2).shape == (3, 0, 2)


@pytest.mark.parametrize("n_heads", [8, 12])
def test_alibi_bias_matches_bloom_under_a_causal_mask(n_heads):
    """BLOOM adds m_h * j (no query term); softmax ignores a per-row constant, so the causal
    attention weights are the same as with -m_h * (i - j)."""
    L = 9
    gen = torch.Generator().manual_seed(7)
    scores = torch.randn(1, n_heads, L, L, generator=gen, dtype=torch.float64)
    bloom = build_alibi_tensor(torch.ones(1, L, dtype=torch.long), n_heads, torch.float64)
    bloom = bloom.reshape(1, n_heads, 1, L)
    mask = torch.from_numpy(causal_mask(L))
    want = softmax(scores + bloom, mask=mask)
    got = softmax(scores + torch.from_numpy(alibi_bias(n_heads, L)), mask=mask)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)   # BLOOM's slopes are float32


def test_alibi_prefers_near_keys():
    w = softmax(alibi_bias(4, 6), mask=causal_mask(6))   # zero scores: only the bias speaks
    for h in range(4):
        row = w[h, -1]
        assert np.all(np.diff(row) > 0), "with equal scores a nearer key gets more weight"


@pytest.mark.parametrize("fn, args, exc, message", [
    (alibi_slopes, (0,), ValueError, "n_heads must be >= 1, got 0"),
    (alibi_slopes, (2.0,), TypeError, "n_heads must be an int, got float"),
    (alibi_bias, (0, 3), ValueError, "n_heads must be >= 1"),
    (alibi_bias, (4, -1), ValueError, "n_q must be >= 0"),
    (alibi_bias, (4, 3, -2), ValueError, "n_k must be >= 0"),
    (alibi_bias, (4, 3, 1.5), TypeError, "n_k must be an int"),
])
def test_alibi_bad_input(fn, args, exc, message):
    with pytest.raises(exc, match=message):
        fn(*args)
