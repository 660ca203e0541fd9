"""attnlib.softmax / log_softmax: unit, property and torch-equivalence tests."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from attnlib import log_softmax, softmax

FUNCS = [softmax, log_softmax]


def finite_arrays(min_dims=1, max_dims=3, elements=(-50.0, 50.0)):
    """float64 arrays of 1-3 dims, 1-6 entries per dim, with finite values."""
    return hnp.arrays(np.float64, hnp.array_shapes(min_dims=min_dims, max_dims=max_dims,
                                                   min_side=1, max_side=6),
                      elements=st.floats(*elements))


# --- unit tests ---------------------------------------------------------------

def test_known_values():
    np.testing.assert_allclose(softmax(np.array([2.0, 3.0, 1.0])),
                               [0.24472847, 0.66524096, 0.09003057], rtol=1e-7)


def test_known_values_torch_and_type_kept():
    p = softmax(torch.tensor([2.0, 3.0, 1.0]))
    assert isinstance(p, torch.Tensor) and p.dtype == torch.float32
    torch.testing.assert_close(p, torch.tensor([0.24472847, 0.66524096, 0.09003057]))


@pytest.mark.parametrize("func", FUNCS)
def test_numpy_in_numpy_out_with_dtype(func):
    for dtype in (np.float32, np.float64):
        out = func(np.ones((2, 3), dtype=dtype))
        assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == (2, 3)


@pytest.mark.parametrize("func", FUNCS)
def test_integer_and_list_input_promoted_to_float(func):
    np.testing.assert_allclose(func(np.array([1, 2, 3])), func(np.array([1.0, 2.0, 3.0])))
    np.testing.assert_allclose(func([1, 2, 3]), func(np.array([1.0, 2.0, 3.0])))
    out = func(torch.tensor([1, 2, 3]))
    assert out.dtype == torch.get_default_dtype()


def test_temperature_scales_logits():
    x = np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(softmax(x, temperature=2.0), softmax(x / 2.0))
    assert softmax(x, temperature=0.01)[2] > 0.999          # near arg-max
    np.testing.assert_allclose(softmax(x, temperature=1e6), np.full(3, 1 / 3), atol=1e-5)


def test_axis_argument():
    x = np.random.default_rng(0).normal(size=(3, 4, 5))
    for axis in (0, 1, 2, -1, -3):
        p = softmax(x, axis=axis)
        np.testing.assert_allclose(p.sum(axis=axis), 1.0)
        np.testing.assert_allclose(p, np.moveaxis(softmax(np.moveaxis(x, axis, -1)), -1, axis))


@pytest.mark.parametrize("make", [np.asarray, torch.tensor])
def test_mask_gives_zero_probability_and_broadcasts(make):
    x = make(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    mask = make(np.array([True, False, True]))                 # broadcast over rows
    p = np.asarray(softmax(x, mask=mask))
    assert np.all(p[:, 1] == 0)
    np.testing.assert_allclose(p[:, [0, 2]], np.asarray(softmax(x[:, [0, 2]])), rtol=1e-6)


@pytest.mark.parametrize("make", [np.asarray, torch.tensor])
def test_fully_masked_row(make):
    x = make(np.array([[1.0, 2.0], [3.0, 4.0]]))
    mask = make(np.array([[True, True], [False, False]]))
    p = np.asarray(softmax(x, mask=mask))
    logp = np.asarray(log_softmax(x, mask=mask))
    np.testing.assert_array_equal(p[1], [0.0, 0.0])
    assert np.all(logp[1] == -np.inf)
    np.testing.assert_allclose(p[0].sum(), 1.0)


def test_fully_masked_row_has_finite_gradient():
    x = torch.randn(2, 3, requires_grad=True)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    for func in FUNCS:
        out = func(x, mask=mask)
        torch.where(torch.isfinite(out), out, 0.0).sum().backward()
        assert torch.isfinite(x.grad).all()
        x.grad = None


def test_mask_type_follows_x():
    x = torch.ones(2, 3)
    assert isinstance(softmax(x, mask=np.array([True, False, True])), torch.Tensor)
    assert isinstance(softmax(x.numpy(), mask=torch.tensor([True, False, True])), np.ndarray)


@pytest.mark.parametrize("make", [np.float32, lambda a: torch.tensor(a, dtype=torch.float32)])
def test_finite_for_large_float32_logits(make):
    x = make(np.array([[1e4, -1e4, 9999.0], [-1e4, -1e4, -1e4]]))
    p, logp = np.asarray(softmax(x)), np.asarray(log_softmax(x))
    assert np.isfinite(p).all() and np.isfinite(logp).all()
    np.testing.assert_allclose(p[0], [1 / (1 + np.exp(-1)), 0.0, 1 / (1 + np.e)], rtol=1e-6)
    np.testing.assert_allclose(p[1], np.full(3, 1 / 3), rtol=1e-6)


def test_log_softmax_beats_log_of_softmax():
    x = np.array([0.0, -1000.0])
    np.testing.assert_allclose(log_softmax(x), [0.0, -1000.0])
    with np.errstate(divide="ignore"):
        assert np.log(softmax(x))[1] == -np.inf        # why log_softmax exists


# --- bad input ----------------------------------------------------------------

@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("temperature", [0, -1.0, float("inf"), float("nan")])
def test_bad_temperature_value(func, temperature):
    with pytest.raises(ValueError, match="temperature"):
        func(np.ones(3), temperature=temperature)


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("temperature", ["1", None, True, np.ones(2)])
def test_bad_temperature_type(func, temperature):
    with pytest.raises(TypeError, match="temperature"):
        func(np.ones(3), temperature=temperature)


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("x", ["abc", ["a", "b"], {"a": 1}, np.array([True, False]),
                               torch.tensor([True]), np.array([1 + 2j]), object()])
def test_non_numeric_input(func, x):
    with pytest.raises(TypeError, match=r"^x must"):
        func(x)


@pytest.mark.parametrize("func", FUNCS)
def test_mask_that_cannot_broadcast(func):
    with pytest.raises(ValueError, match=r"mask of shape \(3, 2\) cannot broadcast to shape \(2, 3\)"):
        func(np.ones((2, 3)), mask=np.ones((3, 2), dtype=bool))
    # a mask that would broadcast x itself to a larger shape is refused too
    with pytest.raises(ValueError, match="mask"):
        func(np.ones(3), mask=np.ones((2, 3), dtype=bool))


@pytest.mark.parametrize("func", FUNCS)
def test_non_boolean_mask(func):
    with pytest.raises(TypeError, match="mask must be boolean"):
        func(np.ones(3), mask=np.array([1, 0, 1]))
    with pytest.raises(TypeError, match="mask must be boolean"):
        func(torch.ones(3), mask=torch.ones(3))


@pytest.mark.parametrize("func", FUNCS)
def test_bad_axis(func):
    with pytest.raises(ValueError, match="axis=2"):
        func(np.ones((2, 3)), axis=2)
    with pytest.raises(TypeError, match="axis"):
        func(np.ones((2, 3)), axis=1.0)
    with pytest.raises(ValueError, match="no entries along axis"):
        func(np.ones((2, 0)))


# --- properties ---------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(finite_arrays(), st.data())
def test_rows_sum_to_one_and_lie_in_unit_interval(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    p = softmax(x, axis=axis)
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p.sum(axis=axis), 1.0, rtol=1e-12)


@settings(max_examples=200, deadline=None)
@given(finite_arrays(), st.floats(-1e3, 1e3))
def test_shift_invariance(x, c):
    np.testing.assert_allclose(softmax(x + c), softmax(x), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(log_softmax(x + c), log_softmax(x), rtol=1e-9, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(finite_arrays(elements=(-1e4, 1e4)), st.floats(0.05, 20.0))
def test_agrees_with_torch_softmax(x, temperature):
    t = torch.from_numpy(x) / temperature
    np.testing.assert_allclose(softmax(x, temperature=temperature),
                               torch.softmax(t, dim=-1).numpy(), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(log_softmax(x, temperature=temperature),
                               torch.log_softmax(t, dim=-1).numpy(), rtol=1e-10, atol=1e-10)


@settings(max_examples=200, deadline=None)
@given(finite_arrays(min_dims=2), st.data())
def test_numpy_torch_parity_with_masks(x, data):
    mask = data.draw(hnp.arrays(np.bool_, x.shape))
    for func in FUNCS:
        expected = func(x, mask=mask)
        got = func(torch.from_numpy(x), mask=torch.from_numpy(mask))
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(finite_arrays(min_dims=2), st.data())
def test_exp_of_log_softmax_is_softmax(x, data):
    mask = data.draw(hnp.arrays(np.bool_, x.shape))
    np.testing.assert_allclose(np.exp(log_softmax(x, mask=mask)), softmax(x, mask=mask),
                               rtol=1e-10, atol=1e-12)
