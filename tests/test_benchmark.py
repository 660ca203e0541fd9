"""attnlib.benchmark: memory of known allocations, the comparison table, the workloads.

No test here asserts anything about speed: the machine is shared, and timings go
in benchmarks/ as printed ratios instead.
"""

import functools
import statistics

import numpy as np
import pytest
import torch

from attnlib import benchmark as bm

MiB = bm.MiB
TOLERANCE = 3 * MiB   # the interpreter's own small blocks


def touched_torch(mib):
    """Factory: a call that allocates and writes ``mib`` MiB with torch."""
    return functools.partial(torch.ones, mib * MiB // 4, dtype=torch.float32)


def touched_numpy(mib):
    return functools.partial(np.ones, mib * MiB // 8, dtype=np.float64)


def untouched_torch(mib):
    """torch.empty reserves pages without writing them: nothing becomes resident."""
    return functools.partial(torch.empty, mib * MiB // 4, dtype=torch.float32)


def transient_torch(mib):
    """Allocates ``mib`` MiB, frees it, and returns a small tensor: the peak is ``mib``."""
    def call():
        return torch.ones(mib * MiB // 4).sum()
    return call


def failing():
    def call():
        raise ZeroDivisionError("on purpose")
    return call


def counter():
    calls = []
    return lambda: calls.append(1)


@pytest.mark.parametrize("make", [touched_torch, touched_numpy])
@pytest.mark.parametrize("mib", [256, 32])
def test_peak_memory_of_a_known_allocation(make, mib):
    got = bm.peak_memory(functools.partial(make, mib))
    assert abs(got - mib * MiB) <= TOLERANCE, f"{make.__name__}({mib}) measured {got / MiB:.1f} MiB"


def test_peak_memory_sees_memory_freed_before_the_call_returns():
    got = bm.peak_memory(functools.partial(transient_torch, 128))
    assert abs(got - 128 * MiB) <= TOLERANCE, f"measured {got / MiB:.1f} MiB"


def test_untouched_memory_is_not_counted():
    assert bm.peak_memory(functools.partial(untouched_torch, 256)) <= TOLERANCE


def test_warmup_does_not_hide_the_peak():
    # warm-up calls free their memory, yet the measured call must still show it
    got = bm.peak_memory(functools.partial(transient_torch, 64), warmup=3)
    assert abs(got - 64 * MiB) <= TOLERANCE, f"measured {got / MiB:.1f} MiB"


def test_naive_attention_memory_matches_its_score_matrices():
    # n=2048: the scores and their softmax are two (2048, 2048) float32 matrices = 32 MiB
    got = bm.peak_memory(functools.partial(bm.attention_call, bm.naive_attention, 2048))
    assert 32 * MiB - TOLERANCE <= got <= 32 * MiB + 2 * TOLERANCE, f"measured {got / MiB:.1f} MiB"


def test_error_in_the_child_is_reported():
    with pytest.raises(RuntimeError, match="ZeroDivisionError: on purpose"):
        bm.peak_memory(failing)


def test_time_call_runs_warmup_plus_repeats():
    calls = []
    times = bm.time_call(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and len(times) == 4 and all(t >= 0 for t in times)


@pytest.mark.parametrize("bad, err", [(0, ValueError), (1.5, TypeError)])
def test_time_call_bad_repeats(bad, err):
    with pytest.raises(err, match="repeats"):
        bm.time_call(lambda: None, repeats=bad)


def test_compare_table_and_ratios():
    result = bm.compare({"base": counter, "other": counter}, baseline="base", repeats=3,
                        warmup=1, title="demo")
    assert result.names == ("base", "other") and len(result.times["other"]) == 3
    assert result.ratio("base") == 1.0
    assert result.ratio("other") == pytest.approx(result.median("other") / result.median("base"))
    assert result.median("base") == statistics.median(result.times["base"])
    text = str(result)
    assert text.splitlines()[0] == "demo" and "x base" in text and "1.00x" in text
    assert [r["peak_bytes"] for r in result.rows()] == [None, None]


def test_compare_with_memory():
    result = bm.compare({"small": functools.partial(touched_torch, 8),
                         "large": functools.partial(touched_torch, 64)},
                        baseline="small", repeats=1, warmup=0, memory=True)
    assert abs(result.memory["large"] - 64 * MiB) <= TOLERANCE
    assert abs(result.memory["small"] - 8 * MiB) <= TOLERANCE
    assert "64.0 MiB" in result.table()


def test_compare_unknown_baseline():
    with pytest.raises(ValueError, match="baseline 'sdpa'"):
        bm.compare({"a": counter}, baseline="sdpa")


@pytest.mark.parametrize("backend, kind", [("torch", torch.Tensor), ("numpy", np.ndarray)])
def test_attention_inputs_are_seeded(backend, kind):
    q, k, v = bm.attention_inputs(5, batch=2, heads=3, d=4, backend=backend, seed=1)
    assert all(isinstance(t, kind) and tuple(t.shape) == (2, 3, 5, 4) for t in (q, k, v))
    q2, _, _ = bm.attention_inputs(5, batch=2, heads=3, d=4, backend=backend, seed=1)
    np.testing.assert_array_equal(np.asarray(q), np.asarray(q2))
    assert not np.array_equal(np.asarray(q), np.asarray(k))


@pytest.mark.parametrize("kwargs, err", [({"dtype": "float16"}, ValueError),
                                         ({"backend": "jax"}, ValueError),
                                         ({"d": 0}, ValueError),
                                         ({"dtype": "bfloat16", "backend": "numpy"}, ValueError)])
def test_attention_inputs_bad(kwargs, err):
    with pytest.raises(err):
        bm.attention_inputs(4, **kwargs)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_baselines_agree_with_each_other(causal, backend):
    q, k, v = bm.attention_inputs(7, heads=2, d=4, dtype="float64", backend=backend)
    ref = bm.torch_sdpa(*map(torch.as_tensor, (q, k, v)), causal=causal)
    got = bm.naive_attention(q, k, v, causal=causal)
    assert isinstance(got, type(q))
    np.testing.assert_allclose(np.asarray(got), ref.numpy(), atol=1e-12)


def test_attention_call_passes_keyword_arguments():
    call = bm.attention_call(bm.torch_sdpa, 6, d=4, dtype="float64", causal=True)
    q, k, v = bm.attention_inputs(6, d=4, dtype="float64")
    torch.testing.assert_close(call(), bm.torch_sdpa(q, k, v, causal=True))


def test_attention_inputs_bfloat16():
    q, _, _ = bm.attention_inputs(5, d=4, dtype="bfloat16")
    assert q.dtype == torch.bfloat16 and q.shape == (1, 1, 5, 4)


@pytest.mark.parametrize("causal", [False, True])
def test_training_call_returns_the_gradients_of_one_step(causal):
    call = bm.training_call(bm.naive_attention, 6, heads=2, d=4, dtype="float64", causal=causal)
    q, k, v = (t.requires_grad_() for t in bm.attention_inputs(6, heads=2, d=4, dtype="float64"))
    d_out = torch.randn(1, 2, 6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = torch.autograd.grad(bm.torch_sdpa(q, k, v, causal=causal), (q, k, v), d_out)
    for _ in range(2):                      # a second call starts from fresh gradients
        got = call()
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)


def allocate_per_thread():
    """Factory: a call that writes 32 MiB per torch thread it sees."""
    return lambda: torch.ones(torch.get_num_threads() * 32 * MiB // 4)


def test_peak_memory_child_uses_the_callers_thread_count():
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            got = bm.peak_memory(allocate_per_thread)
            assert abs(got - threads * 32 * MiB) <= TOLERANCE, f"{threads} thread(s): {got / MiB:.1f} MiB"
    finally:
        torch.set_num_threads(before)


def test_read_table_of_the_shipped_run():
    rows = bm.read_table()
    assert {"torch sdpa", "chunked", "sliding window"} <= {r["implementation"] for r in rows}
    for r in rows:
        assert isinstance(r["n"], int) and isinstance(r["causal"], bool)
        assert r["median_s"] > 0 and r["cpus"] >= 1 and r["cpu"] and r["torch"]
        assert r["peak_bytes"] is None or isinstance(r["peak_bytes"], int)
        if r["implementation"] == "torch sdpa":
            assert r["ratio_to_sdpa"] == 1.0
    # every (dtype, causal, n) was measured against its own torch sdpa row
    runs = {(r["dtype"], r["causal"], r["n"]) for r in rows}
    sdpa = {(r["dtype"], r["causal"], r["n"]) for r in rows if r["implementation"] == "torch sdpa"}
    assert runs == sdpa


def test_machine_describes_the_cpu():
    info = bm.machine()
    assert info["cpus"] >= 1 and info["threads"] >= 1 and info["torch"] == torch.__version__
    assert isinstance(info["cpu"], str) and info["cpu"]
    assert isinstance(info["bfloat16"], bool)
