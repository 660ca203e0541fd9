"""attnlib.decoder: the configurable decoder-only model.

``CausalLM.from_hf`` is checked against Hugging Face ``transformers`` built offline
from random-init configs, every parameter redrawn far from its default: GPT-2
(learned positions, LayerNorm, tanh-GELU MLP, tied embeddings) and LLaMA (RoPE,
RMSNorm, SwiGLU, grouped-query attention with fewer key/value heads, untied).
Logits agree to 1e-4 in float32 (logits of size about 10). In float64 GPT-2 agrees
to 1e-9; LLaMA only to 1e-4, because ``transformers`` computes LLaMA's RMSNorm and
RoPE tables in float32 whatever the model's dtype.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

transformers = pytest.importorskip("transformers")

from attnlib import CausalLM, DecoderConfig, KVCache, next_token_loss  # noqa: E402
from tests.arrays import randomized  # noqa: E402

V = 53


def gpt2(dtype=torch.float32, **kw):
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=24, n_embd=32, n_layer=2, n_head=4,
                                  bos_token_id=0, eos_token_id=0, **kw)
    return randomized(transformers.GPT2LMHeadModel(cfg).to(dtype))


def llama(dtype=torch.float32, kv_heads=2, **kw):
    cfg = transformers.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=44,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=kv_heads, max_position_embeddings=40,
                                   bos_token_id=0, eos_token_id=0, **kw)
    return randomized(transformers.LlamaForCausalLM(cfg).to(dtype))


def ids(b=3, length=17, seed=1):
    return torch.randint(0, V, (b, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_gpt2_logits_match_transformers(dtype, tol):
    hf = gpt2(dtype)
    ours = CausalLM.from_hf(hf)
    cfg = ours.config
    assert (cfg.positions, cfg.norm, cfg.feed_forward, cfg.tie_embeddings) == \
        ("learned", "layernorm", "gelu_tanh", True)
    x = ids(length=24)
    with torch.no_grad():
        want = hf(x).logits
        got = ours(x)
    assert want.abs().max() > 3           # the comparison is not between near-zero numbers
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_llama_logits_match_transformers(kv_heads, dtype, tol=1e-4):
    hf = llama(dtype, kv_heads=kv_heads, rope_theta=500.0)
    ours = CausalLM.from_hf(hf)
    cfg = ours.config
    assert (cfg.positions, cfg.norm, cfg.feed_forward, cfg.num_kv_heads, cfg.rope_base) == \
        ("rope", "rmsnorm", "swiglu", kv_heads, 500.0)
    x = ids(length=40)
    with torch.no_grad():
        want = hf(x).logits
        got = ours(x)
    assert want.abs().max() > 3
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)


def test_llama_gradients_match_transformers():
    hf = llama(torch.float64)
    ours = CausalLM.from_hf(hf)
    x = ids()
    hf_loss = hf(x, labels=x).loss          # transformers shifts the labels itself (in float32)
    loss = next_token_loss(ours(x), x)
    torch.testing.assert_close(loss.float(), hf_loss, atol=1e-5, rtol=1e-5)
    loss.backward()
    hf_loss.backward()
    torch.testing.assert_close(ours.layers[1].mlp.down_proj.weight.grad,
                               hf.model.layers[1].mlp.down_proj.weight.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.embed_tokens.weight.grad, hf.model.embed_tokens.weight.grad,
                               atol=1e-5, rtol=1e-4)


def test_tied_embeddings_share_one_matrix():
    tied = CausalLM(DecoderConfig(V, 8, 16, 1, 2))
    untied = CausalLM(DecoderConfig(V, 8, 16, 1, 2, tie_embeddings=False))
    assert tied.lm_head.weight is tied.embed_tokens.weight
    assert untied.lm_head.weight is not untied.embed_tokens.weight
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(untied) - n(tied) == V * 16


CONFIGS = [
    dict(),
    dict(positions="rope", norm="rmsnorm", feed_forward="swiglu", bias=False, num_kv_heads=1),
    dict(positions="rope", num_kv_heads=2, tie_embeddings=False),
]


@settings(max_examples=25, deadline=None)
@given(config=st.sampled_from(CONFIGS), length=st.integers(2, 12), cut=st.integers(0, 11),
       seed=st.integers(0, 10_000))
def test_changing_a_later_token_never_changes_an_earlier_output(config, length, cut, seed):
    """Causality: logits at positions <= cut depend only on tokens <= cut."""
    cut = cut % (length - 1)
    torch.manual_seed(seed)
    model = randomized(CausalLM(DecoderConfig(V, 12, 16, 2, 4, **config)).double(), seed=seed)
    x = torch.randint(0, V, (2, length))
    y = x.clone()
    y[:, cut + 1:] = torch.randint(0, V, (2, length - cut - 1))
    y[:, cut + 1] = (x[:, cut + 1] + 1) % V               # at least one later token differs
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :cut + 1], b[:, :cut + 1], atol=1e-12, rtol=0)
    assert not torch.allclose(a[:, cut + 1], b[:, cut + 1])   # the changed position does change


def test_next_token_loss_shifts_the_labels():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    x = torch.randint(0, 7, (2, 5))
    want = sum(-logits[b, i].log_softmax(-1)[x[b, i + 1]] for b in range(2) for i in range(4)) / 8
    torch.testing.assert_close(next_token_loss(logits, x), want)


def test_next_token_loss_refuses_what_it_cannot_score():
    logits, x = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    with pytest.raises(ValueError, match=r"^input_ids must have L >= 2 tokens"):
        next_token_loss(logits[:, :1], x[:, :1])
    with pytest.raises(ValueError, match=r"^logits must have shape \(B, L, V\) with \(B, L\) = \(2, 5\)"):
        next_token_loss(logits[:, :4], x)
    with pytest.raises(TypeError, match=r"^input_ids must be an int64 tensor"):
        next_token_loss(logits, x.float())


@pytest.mark.parametrize("make, match", [
    (lambda: DecoderConfig(V, 8, 30, 1, 4), "divisible by num_heads"),
    (lambda: DecoderConfig(V, 8, 32, 1, 4, num_kv_heads=3), "H % H_kv"),
    (lambda: DecoderConfig(V, 8, 32, 1, 4, positions="sinusoidal"), "positions must be one of"),
    (lambda: DecoderConfig(V, 8, 32, 1, 4, norm="batchnorm"), "norm must be one of"),
    (lambda: DecoderConfig(V, 8, 24, 1, 8, positions="rope"), "head_dim"),
    (lambda: CausalLM(DecoderConfig(V, 8, 16, 1, 2))(torch.zeros(1, 9, dtype=torch.long)),
     "max_positions=8"),
    (lambda: CausalLM(DecoderConfig(V, 8, 16, 1, 2))(torch.full((1, 3), V)), r"lie in \[0, 53\)"),
])
def test_bad_input_gets_a_clear_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_types_get_type_errors():
    model = CausalLM(DecoderConfig(V, 8, 16, 1, 2))
    with pytest.raises(TypeError, match=r"input_ids must be an int64 tensor of shape \(B, L\)"):
        model(torch.zeros(1, 3))
    with pytest.raises(TypeError, match="hf_model must be a GPT2LMHeadModel or LlamaForCausalLM"):
        CausalLM.from_hf(model)
    with pytest.raises(TypeError, match="cache must be an attnlib KVCache, got int"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=3)
    with pytest.raises(ValueError, match="cache has 3 layers but the model has 1"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=KVCache(3))
    with pytest.raises(TypeError, match="bias must be True or False"):
        DecoderConfig(V, 8, 16, 1, 2, bias=1)
