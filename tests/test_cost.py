"""attnlib.cost: the FLOP and memory model against hand counts and measured operations."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from attnlib import attention_flops, attention_memory_bytes, crossover_length


def test_hand_counted_example():
    # n=4 queries, d=2, one head: Q K^T is 4*4 dot products of length 2 = 32 mul-adds
    f = attention_flops(4, 2)
    assert f == {"scores": 64, "softmax": 80, "weighted_sum": 64, "projections": 0, "feed_forward": 0, "total": 208}


def test_four_n_squared_d_per_head_and_eight_n_d_squared():
    n, d, heads = 1024, 64, 12
    f = attention_flops(n, d, heads=heads, projections=True)
    d_model = heads * d
    assert f["scores"] + f["weighted_sum"] == 4 * n * n * d * heads == 4 * n * n * d_model
    assert f["projections"] == 8 * n * d_model ** 2
    assert f["total"] == sum(v for k, v in f.items() if k != "total")


def test_batch_and_heads_scale_linearly():
    one = attention_flops(100, 16)
    many = attention_flops(100, 16, heads=3, batch=5)
    for key in ("scores", "softmax", "weighted_sum"):
        assert many[key] == 15 * one[key]


def test_matmul_flops_match_torch_flop_counter():
    # torch counts 2 FLOPs per multiply-add in matmuls, like the model
    q, k, v = torch.randn(3, 2, 4, 96, 32)
    with FlopCounterMode(display=False) as counter:
        torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
    f = attention_flops(96, 32, heads=4, batch=2)
    assert counter.get_total_flops() == f["scores"] + f["weighted_sum"]


def test_projection_flops_match_torch_flop_counter():
    n, d_model = 50, 24
    x = torch.randn(1, n, d_model)
    layers = [torch.nn.Linear(d_model, d_model, bias=False) for _ in range(4)]
    with FlopCounterMode(display=False) as counter:
        for layer in layers:
            layer(x)
    assert counter.get_total_flops() == attention_flops(n, d_model // 4, heads=4,
                                                        projections=True)["projections"]


@given(n=st.integers(1, 60), m=st.integers(1, 60))
def test_causal_pairs_count_the_kept_entries(n, m):
    kept = int(np.tril(np.ones((n, m), dtype=bool)).sum())
    f = attention_flops(n, 8, n_kv=m, causal=True)
    assert f["softmax"] == 5 * kept
    assert f["scores"] == 2 * kept * 8


def test_causal_roughly_halves_the_work():
    full, causal = attention_flops(4096, 64), attention_flops(4096, 64, causal=True)
    assert causal["scores"] / full["scores"] == pytest.approx(0.5, abs=1e-3)


def test_crossover_is_where_the_two_terms_meet():
    d_model = 768
    n = crossover_length(d_model)
    assert n == 1536
    f = attention_flops(n, 64, heads=12, projections=True)
    assert f["scores"] + f["weighted_sum"] == f["projections"]
    below = attention_flops(n - 1, 64, heads=12, projections=True)
    assert below["scores"] + below["weighted_sum"] < below["projections"]


def test_crossover_with_the_feed_forward_layer():
    d_model, hidden = 768, 3072                      # BERT-base: F = 4 D
    n = crossover_length(d_model, feed_forward=hidden)
    assert n == 6 * d_model == 4608
    f = attention_flops(n, 64, heads=12, projections=True, feed_forward=hidden)
    assert f["feed_forward"] == 16 * n * d_model ** 2
    assert f["scores"] + f["weighted_sum"] == f["projections"] + f["feed_forward"]
    below = attention_flops(n - 1, 64, heads=12, projections=True, feed_forward=hidden)
    assert below["scores"] + below["weighted_sum"] < below["projections"] + below["feed_forward"]
    assert attention_flops(n, 64, heads=12)["feed_forward"] == 0
    with pytest.raises(ValueError, match="feed_forward"):
        crossover_length(d_model, feed_forward=-1)


def test_dense_memory_is_one_score_matrix_per_head():
    mem = attention_memory_bytes(16384, 64)
    assert mem["scores"] == 2 ** 30              # 16384^2 float32 = 1 GiB
    assert mem["output"] == 16384 * 64 * 4
    assert mem["inputs"] == 3 * 16384 * 64 * 4
    assert mem["state"] == 0 and mem["extra"] == mem["scores"] + mem["output"]


def test_chunked_memory_is_one_tile():
    mem = attention_memory_bytes(16384, 64, chunk_size=1024)
    assert mem["scores"] == 1024 * 1024 * 4
    assert mem["state"] == 1024 * 66 * 4
    assert mem["extra"] <= 2 ** 30 / 16
    # a chunk larger than the sequence is capped at the sequence
    assert attention_memory_bytes(100, 8, chunk_size=1024)["scores"] == 100 * 100 * 4


@pytest.mark.parametrize("dtype, size", [("float64", 8), (np.float32, 4), (torch.float16, 2),
                                         (torch.float64, 8)])
def test_memory_dtypes(dtype, size):
    assert attention_memory_bytes(10, 4, n_kv=7, heads=2, dtype=dtype)["scores"] == 2 * 10 * 7 * size


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(n=0, d=4), ValueError, "n must be >= 1"),
    (dict(n=4, d=2.5), TypeError, "d must be an int"),
    (dict(n=4, d=4, heads=0), ValueError, "heads"),
    (dict(n=4, d=4, n_kv=-1), ValueError, "n_kv"),
    (dict(n=4, d=4, batch=True), TypeError, "batch"),
])
def test_bad_sizes(kwargs, err, match):
    with pytest.raises(err, match=match):
        attention_flops(**kwargs)
    with pytest.raises(err, match=match):
        attention_memory_bytes(**kwargs)


@pytest.mark.parametrize("dtype, err", [("int32", ValueError), (object(), TypeError)])
def test_bad_dtype(dtype, err):
    with pytest.raises(err, match="dtype"):
        attention_memory_bytes(8, 4, dtype=dtype)


def test_bad_chunk_size():
    with pytest.raises(ValueError, match="chunk_size"):
        attention_memory_bytes(8, 4, chunk_size=0)
