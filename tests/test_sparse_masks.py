"""attnlib.sparse_masks: each builder against its definition written as a loop, counts, symmetry, seeds."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlib import (bigbird_layout, bigbird_mask, fixed_mask, global_token_index, layout_to_mask,
                     local_mask, longformer_mask, strided_mask)


def from_rule(n, rule):
    """The (n, n) mask with entry (i, j) = rule(i, j), written as a plain double loop."""
    return np.array([[bool(rule(i, j)) for j in range(n)] for i in range(n)])


def two_hops(mask):
    """Pairs (i, j) joined by a path of at most two attention steps."""
    m = mask.astype(np.int64)
    return (m + m @ m) > 0


# --- each builder equals its definition ---------------------------------------

@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), window=st.integers(0, 45), causal=st.booleans(),
       dilation=st.integers(1, 5))
def test_local_mask_definition(n, window, causal, dilation):
    def rule(i, j):
        m, r = divmod(j - i, dilation)
        return r == 0 and abs(m) <= window and (m <= 0 or not causal)
    mask = local_mask(n, window, causal=causal, dilation=dilation)
    assert mask.dtype == np.bool_ and mask.shape == (n, n)
    np.testing.assert_array_equal(mask, from_rule(n, rule))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), stride=st.integers(1, 12), causal=st.booleans())
def test_strided_mask_definition(n, stride, causal):
    def rule(i, j):
        return (abs(i - j) <= stride or (i - j) % stride == 0) and (j <= i or not causal)
    np.testing.assert_array_equal(strided_mask(n, stride, causal=causal), from_rule(n, rule))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), stride=st.integers(1, 12), data=st.data(), causal=st.booleans())
def test_fixed_mask_definition(n, stride, data, causal):
    c = data.draw(st.integers(1, stride))
    def rule(i, j):
        return (i // stride == j // stride or j % stride >= stride - c) and (j <= i or not causal)
    np.testing.assert_array_equal(fixed_mask(n, stride, summary=c, causal=causal), from_rule(n, rule))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), window=st.integers(0, 10),
       chosen=st.lists(st.integers(0, 39), max_size=5))
def test_longformer_mask_definition(n, window, chosen):
    g = {c for c in chosen if c < n}
    def rule(i, j):
        return abs(i - j) <= window or i in g or j in g
    mask = longformer_mask(n, window, sorted(g))
    np.testing.assert_array_equal(mask, from_rule(n, rule))
    np.testing.assert_array_equal(mask, mask.T)


# --- counts of non-zeros ------------------------------------------------------

@pytest.mark.parametrize("n, window", [(1, 0), (10, 0), (10, 3), (10, 9), (10, 50), (257, 16)])
def test_local_mask_counts(n, window):
    w = min(window, n - 1)
    off_diagonal = sum(n - k for k in range(1, w + 1))    # keys at distance k: n - k per side
    assert local_mask(n, window).sum() == n + 2 * off_diagonal
    assert local_mask(n, window, causal=True).sum() == n + off_diagonal
    assert local_mask(n, window).sum(axis=1).max() == min(n, 2 * window + 1)


def test_local_mask_counts_grow_linearly():
    counts = [local_mask(n, 8).sum() for n in (64, 128, 256, 512)]
    assert np.diff(counts).tolist() == [64 * 17, 128 * 17, 256 * 17]   # 2w + 1 = 17 per extra row


def test_dilated_mask_counts_match_plain_window():
    # a dilated window has as many keys per row as the plain one, spread over a wider span
    for d in (2, 3, 4):
        dil = local_mask(200, 5, dilation=d)
        assert dil.sum(axis=1).max() == 11
        assert dil[100].nonzero()[0].tolist() == list(range(100 - 5 * d, 101 + 5 * d, d))


def test_strided_and_fixed_counts():
    n, l = 256, 16
    s = strided_mask(n, l)
    # row i: the l + 1 keys i-l .. i, plus the multiples i - m l for m >= 2
    expect = [min(i, l) + 1 + max(0, i // l - 1) for i in range(n)]
    assert s.sum(axis=1).tolist() == expect
    f = fixed_mask(n, l, summary=2)
    # row i: its own block up to i, plus 2 summary keys of every earlier block
    expect = [i % l + 1 + 2 * (i // l) for i in range(n)]
    assert f.sum(axis=1).tolist() == expect


# --- structure ------------------------------------------------------------------

@pytest.mark.parametrize("builder", [
    lambda n, causal: local_mask(n, 3, causal=causal),
    lambda n, causal: local_mask(n, 2, causal=causal, dilation=3),
    lambda n, causal: strided_mask(n, 4, causal=causal),
    lambda n, causal: fixed_mask(n, 4, summary=2, causal=causal),
])
def test_causal_masks_are_lower_triangular_with_a_diagonal(builder):
    for n in (1, 7, 30):
        causal, full = builder(n, True), builder(n, False)
        np.testing.assert_array_equal(causal, full & np.tri(n, dtype=bool))
        assert causal.diagonal().all() and full.diagonal().all()


def test_symmetric_patterns():
    for m in (local_mask(30, 4), local_mask(30, 2, dilation=3), strided_mask(30, 4, causal=False),
              bigbird_layout(12, num_random=0)):
        np.testing.assert_array_equal(m, m.T)
    # the summary columns make the fixed pattern one-sided
    f = fixed_mask(12, 4, causal=False)
    assert not np.array_equal(f, f.T)


@pytest.mark.parametrize("builder", [lambda n: strided_mask(n, max(1, int(np.sqrt(n)))),
                                     lambda n: fixed_mask(n, max(1, int(np.sqrt(n))))])
def test_factorized_patterns_reach_every_earlier_key_in_two_steps(builder):
    for n in (1, 10, 64, 100):
        np.testing.assert_array_equal(two_hops(builder(n)), np.tri(n, dtype=bool))


def test_a_local_window_needs_many_steps():
    n, w = 64, 4
    reach = local_mask(n, w, causal=True).astype(np.int64)
    hops, seen = 1, reach > 0
    while not seen[-1, 0]:
        seen = (seen.astype(np.int64) @ reach) > 0
        hops += 1
    assert hops == -(-(n - 1) // w)          # ceil(63 / 4) = 16 layers to see position 0


# --- BigBird ------------------------------------------------------------------

def test_bigbird_layout_is_seeded():
    a = bigbird_layout(32, seed=5)
    np.testing.assert_array_equal(a, bigbird_layout(32, seed=5))
    assert not np.array_equal(a, bigbird_layout(32, seed=6))
    np.testing.assert_array_equal(bigbird_mask(100, 8, seed=1), bigbird_mask(100, 8, seed=1))


@pytest.mark.parametrize("nb, window, g, r", [(1, 1, 1, 2), (8, 1, 1, 2), (32, 1, 2, 3), (32, 0, 0, 1),
                                              (6, 2, 1, 10)])
def test_bigbird_layout_rows(nb, window, g, r):
    base = bigbird_layout(nb, window=window, num_global=g, num_random=0)
    full = bigbird_layout(nb, window=window, num_global=g, num_random=r, seed=3)
    I, J = np.indices((nb, nb))
    np.testing.assert_array_equal(base, (abs(I - J) <= window) | (I < g) | (J < g))
    assert (full >= base).all(), "random blocks are added to the window and global blocks"
    added = (full & ~base).sum(axis=1)
    free = (~base).sum(axis=1)
    assert added[:g].sum() == 0
    np.testing.assert_array_equal(added[g:], np.minimum(r, free[g:]))


def test_bigbird_mask_expands_the_layout():
    n, b = 50, 8
    layout = bigbird_layout(7, seed=2)
    mask = bigbird_mask(n, b, seed=2)
    assert mask.shape == (n, n)
    for i, j in [(0, 49), (17, 3), (49, 49), (30, 12)]:
        assert mask[i, j] == layout[i // b, j // b]
    np.testing.assert_array_equal(mask, layout_to_mask(layout, b, n, n))
    assert layout_to_mask(layout, b).shape == (56, 56)


# --- bad input ------------------------------------------------------------------

@pytest.mark.parametrize("call, error, words", [
    (lambda: local_mask(0, 2), ValueError, "n must be >= 1"),
    (lambda: local_mask(5, -1), ValueError, "window must be >= 0"),
    (lambda: local_mask(5, 1.5), TypeError, "window must be an int"),
    (lambda: local_mask(5, 1, dilation=0), ValueError, "dilation must be >= 1"),
    (lambda: strided_mask(5, 0), ValueError, "stride must be >= 1"),
    (lambda: fixed_mask(5, 2, summary=3), ValueError, "summary must be <= stride=2"),
    (lambda: bigbird_layout(4, num_random=-1), ValueError, "num_random must be >= 0"),
    (lambda: layout_to_mask(np.ones((2, 2)), 4), TypeError, "layout must be boolean"),
    (lambda: layout_to_mask(np.ones(3, bool), 4), ValueError, "layout must have shape (nb_q, nb_k)"),
    (lambda: layout_to_mask(np.ones((2, 2), bool), 4, 9, 8), ValueError, "n_q=9"),
    (lambda: longformer_mask(5, 1, [5]), ValueError, "global_tokens must be positions in [-5, 5)"),
    (lambda: longformer_mask(5, 1, [0.5]), TypeError, "global_tokens must be a 1-D sequence"),
    (lambda: longformer_mask(5, 1, np.ones(4, bool)), ValueError, "shape (5,)"),
])
def test_bad_input(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


def test_global_token_index_forms():
    want = [0, 3, 9]
    for g in ([9, 0, 3, 3], np.array([0, 3, -1]), torch.tensor([3, 9, 0]),
              np.isin(np.arange(10), want)):
        assert global_token_index(g, 10).tolist() == want
    assert global_token_index([], 10).tolist() == []
