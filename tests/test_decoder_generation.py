"""attnlib.generate and attnlib.filter_logits.

Cached and uncached generation give the same tokens (greedy and sampled with the
same generator), checked as a hypothesis property over prompt lengths, batch sizes
and model configurations in float64; logits of a cached run equal a full forward
pass to 1e-5 in float32. The filters equal transformers' logits processors.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlib import CausalLM, DecoderConfig, filter_logits, generate

V = 31
CONFIGS = [
    dict(),
    dict(positions="rope", norm="rmsnorm", feed_forward="swiglu", bias=False, num_kv_heads=2),
    dict(positions="rope", num_kv_heads=1),
]


def model(config=None, seed=0, dtype=torch.float64, max_positions=32):
    torch.manual_seed(seed)
    m = CausalLM(DecoderConfig(V, max_positions, 16, 2, 4, **(config or {}))).to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.5)
    return m.eval()


@settings(max_examples=15, deadline=None)
@given(config=st.sampled_from(CONFIGS), b=st.integers(1, 3), prompt=st.integers(1, 10),
       new=st.integers(0, 12), seed=st.integers(0, 1000),
       sampling=st.sampled_from([dict(top_k=1), dict(), dict(temperature=0.7, top_k=5),
                                 dict(top_p=0.8), dict(temperature=1.5, top_k=10, top_p=0.9)]))
def test_cached_generation_equals_uncached(config, b, prompt, new, seed, sampling):
    m = model(config, seed)
    x = torch.randint(0, V, (b, prompt), generator=torch.Generator().manual_seed(seed))
    runs = [generate(m, x, new, use_cache=cache, generator=torch.Generator().manual_seed(seed),
                     **sampling) for cache in (True, False)]
    assert runs[0].shape == (b, prompt + new)
    assert torch.equal(runs[0][:, :prompt], x)
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("config", CONFIGS)
def test_cached_logits_equal_a_full_forward_pass(config):
    m = model(config, dtype=torch.float32)
    x = torch.randint(0, V, (2, 20), generator=torch.Generator().manual_seed(1))
    cache = m.new_cache()
    with torch.no_grad():
        pieces = [m(x[:, :7], cache=cache), m(x[:, 7:8], cache=cache), m(x[:, 8:15], cache=cache)]
        pieces += [m(x[:, i:i + 1], cache=cache) for i in range(15, 20)]
        full = m(x)
    assert len(cache) == 20
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_greedy_picks_the_argmax_and_sampling_is_reproducible():
    m = model()
    x = torch.tensor([[1, 2, 3]])
    out = generate(m, x, 6, top_k=1)
    with torch.no_grad():
        logits = m(out)
    assert torch.equal(out[0, 3:], logits[0, 2:-1].argmax(-1))
    a = generate(m, x, 10, generator=torch.Generator().manual_seed(5))
    b = generate(m, x, 10, generator=torch.Generator().manual_seed(5))
    c = generate(m, x, 10, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_greedy_tokens_equal_transformers_generate():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=40,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=32, bos_token_id=0, eos_token_id=None,
                                      pad_token_id=0)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(config).to(torch.float64).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.5)
    x = torch.randint(1, V, (2, 5), generator=torch.Generator().manual_seed(2))
    want = hf.generate(x, max_new_tokens=20, min_new_tokens=20, do_sample=False, pad_token_id=0)
    got = generate(CausalLM.from_hf(hf), x, 20, top_k=1)
    assert torch.equal(got, want)


def test_generate_restores_training_mode():
    m = model().train()
    generate(m, torch.tensor([[1]]), 2)
    assert m.training


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), top_k=st.integers(1, 40), top_p=st.floats(0.05, 1.0),
       temperature=st.floats(0.2, 3.0))
def test_filters_equal_transformers_processors(seed, top_k, top_p, temperature):
    transformers = pytest.importorskip("transformers")
    logits = torch.randn(3, V, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3
    want = transformers.TemperatureLogitsWarper(temperature)(None, logits)
    want = transformers.TopKLogitsWarper(top_k)(None, want)
    want = transformers.TopPLogitsWarper(top_p)(None, want)
    got = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    torch.testing.assert_close(got[~torch.isinf(got)], want[~torch.isinf(want)])


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    keep = lambda p: torch.isfinite(filter_logits(logits, top_p=p)).tolist()  # noqa: E731
    assert keep(0.5) == [True, False, False, False]
    assert keep(0.7) == [True, True, False, False]
    assert keep(0.96) == [True, True, True, True]
    assert keep(1.0) == [True, True, True, True]
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [True, True, False, False]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(top_p=0.0), ValueError, r"top_p must be a finite number > 0"),
    (dict(top_p=1.5), ValueError, r"top_p must lie in \(0, 1\]"),
    (dict(top_k=0), ValueError, "top_k must be >= 1"),
    (dict(temperature=0.0), ValueError, "temperature must be a finite number > 0"),
    (dict(temperature=-1.0), ValueError, "temperature must be a finite number > 0"),
    (dict(use_cache=1), TypeError, "use_cache must be True or False"),
])
def test_bad_sampling_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        generate(model(), torch.tensor([[1, 2]]), 3, **kwargs)
    if "use_cache" not in kwargs:
        with pytest.raises(error, match=match):
            filter_logits(torch.zeros(2, V), **kwargs)


def test_prompt_and_length_limits():
    m = model(max_positions=8)
    with pytest.raises(ValueError, match="longer than the model's max_positions=8"):
        generate(m, torch.zeros(1, 9, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="max_new_tokens=5 after a prompt of length 4 exceeds"):
        generate(m, torch.zeros(1, 4, dtype=torch.long), 5)
    with pytest.raises(TypeError, match=r"input_ids must be an int64 tensor of shape \(B, L\)"):
        generate(m, torch.zeros(1, 4), 1)
    with pytest.raises(TypeError, match="input_ids must be a torch tensor, got list"):
        generate(m, [[1, 2]], 1)
