"""One contract for every public function: the same mistake gets the same error everywhere."""

import importlib
import inspect
import pkgutil
from functools import cache, partial

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import attnlib
from attnlib import (BertConfig, BertForMaskedLM, BertModel, CausalLM, DecoderConfig,
                     MultiHeadAttention, TransformerDecoderLayer, TransformerEncoderLayer,
                     WordTokenizer, generate, mask_tokens, next_token_loss)
from attnlib import attention, benchmark, flex


def qkv(n=8, d=4, backend="numpy", heads=()):
    arrays = [np.random.default_rng(i).normal(size=(2, *heads, n, d)) for i in range(3)]
    return arrays if backend == "numpy" else [torch.from_numpy(a) for a in arrays]


def mha(**kwargs):
    return MultiHeadAttention(8, 2, **kwargs).double()


def encoder(**kwargs):
    return TransformerEncoderLayer(8, 2, 16, **kwargs).double()


def decoder_layer(**kwargs):
    return TransformerDecoderLayer(8, 2, 16, **kwargs).double()


def lm(**kwargs):
    return CausalLM(DecoderConfig(vocab_size=20, max_positions=16, d_model=8, num_layers=1,
                                  num_heads=2, **kwargs))


X = torch.randn(2, 5, 8, dtype=torch.float64)
PROMPT = torch.tensor([[1, 2, 3]])
CONFIG = BertConfig(vocab_size=20, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16,
                    max_position_embeddings=8)
IDS = torch.randint(0, 20, (2, 5))


@cache
def hf_bert_weights():
    """The state dict of a random transformers ``BertForMaskedLM`` of ``CONFIG``'s sizes."""
    import transformers
    return transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=8)).state_dict()

# Every public function that takes q, k, v, with the arguments it needs besides them.
ATTENTION = {
    "scaled_dot_product_attention": (attnlib.scaled_dot_product_attention, {}),
    "chunked_attention": (attnlib.chunked_attention, {"chunk_size": 4}),
    "sliding_window_attention": (attnlib.sliding_window_attention, {"window": 2}),
    "longformer_attention": (attnlib.longformer_attention, {"window": 2, "global_tokens": [0]}),
    "block_sparse_attention": (attnlib.block_sparse_attention,
                               {"layout": np.ones((2, 2), dtype=bool), "block_size": 4}),
    "bigbird_attention": (attnlib.bigbird_attention, {"block_size": 4, "num_random": 0}),
    "strided_attention": (attnlib.strided_attention, {"stride": 3}),
    "fixed_attention": (attnlib.fixed_attention, {"stride": 3}),
    "linformer_attention": (attnlib.linformer_attention,
                            {"proj_k": attnlib.linformer_projection(8, 3)}),
    "linear_attention": (attnlib.linear_attention, {}),
}
# grouped-query attention takes heads as a dimension: q (B, H, L, d), k and v (B, H_kv, L, d)
GQA = (lambda q, k, v, **kw: attnlib.grouped_query_attention(q, k[:, :1], v[:, :1], **kw))

# Every boolean flag of the public API, as a call that passes the flag's value.
FLAGS = {
    **{f"{name}(causal)": (lambda value, f=f, kw=kw: f(*qkv(), **kw, causal=value), "causal")
       for name, (f, kw) in ATTENTION.items() if name in (
           "scaled_dot_product_attention", "chunked_attention", "sliding_window_attention",
           "strided_attention", "fixed_attention", "linear_attention")},
    "scaled_dot_product_attention(return_weights)": (
        lambda value: attnlib.scaled_dot_product_attention(*qkv(), return_weights=value),
        "return_weights"),
    "local_mask(causal)": (lambda value: attnlib.local_mask(6, 2, causal=value), "causal"),
    "strided_mask(causal)": (lambda value: attnlib.strided_mask(6, 2, causal=value), "causal"),
    "fixed_mask(causal)": (lambda value: attnlib.fixed_mask(6, 2, causal=value), "causal"),
    "MultiHeadAttention(bias)": (lambda value: mha(bias=value), "bias"),
    "MultiHeadAttention.forward(causal)": (lambda value: mha()(X, causal=value), "causal"),
    "MultiHeadAttention.forward(need_weights)": (lambda value: mha()(X, need_weights=value),
                                                 "need_weights"),
    "TransformerEncoderLayer(norm_first)": (lambda value: encoder(norm_first=value),
                                            "norm_first"),
    "TransformerEncoderLayer(bias)": (lambda value: encoder(bias=value), "bias"),
    "TransformerEncoderLayer.forward(causal)": (lambda value: encoder()(X, causal=value),
                                                "causal"),
    "TransformerEncoderLayer.forward(need_weights)": (
        lambda value: encoder()(X, need_weights=value), "need_weights"),
    "grouped_query_attention(causal)": (lambda value: GQA(*qkv(heads=(2,)), causal=value),
                                        "causal"),
    "TransformerDecoderLayer(norm_first)": (lambda value: decoder_layer(norm_first=value),
                                            "norm_first"),
    "TransformerDecoderLayer.forward(causal)": (lambda value: decoder_layer()(X, X, causal=value),
                                                "causal"),
    "TransformerDecoderLayer.forward(need_weights)": (
        lambda value: decoder_layer()(X, X, need_weights=value), "need_weights"),
    "DecoderConfig(bias)": (lambda value: lm(bias=value), "bias"),
    "DecoderConfig(tie_embeddings)": (lambda value: lm(tie_embeddings=value), "tie_embeddings"),
    "generate(use_cache)": (lambda value: generate(lm(), PROMPT, 2, use_cache=value),
                            "use_cache"),
    "attention_weights(causal)": (lambda value: attention.attention_weights(*qkv()[:2],
                                                                          causal=value), "causal"),
    "TransformerDecoderLayer(bias)": (lambda value: decoder_layer(bias=value), "bias"),
    "BertModel(add_pooling_layer)": (lambda value: BertModel(CONFIG, add_pooling_layer=value),
                                     "add_pooling_layer"),
    "BertModel.forward(need_weights)": (lambda value: BertModel(CONFIG)(IDS, need_weights=value),
                                        "need_weights"),
    "BertModel.load_hf_state_dict(strict)": (
        lambda value: BertModel(CONFIG, add_pooling_layer=False).load_hf_state_dict(
            hf_bert_weights(), strict=value),
        "strict"),
    "BertForMaskedLM.load_hf_state_dict(strict)": (
        lambda value: BertForMaskedLM(CONFIG).load_hf_state_dict(hf_bert_weights(), strict=value),
        "strict"),
    "WordTokenizer.decode(skip_special_tokens)": (
        lambda value: WordTokenizer.train(["a b"]).decode([2, 5], skip_special_tokens=value),
        "skip_special_tokens"),
    "attention_flops(causal)": (lambda value: attnlib.attention_flops(8, 4, causal=value),
                                "causal"),
    "attention_flops(projections)": (
        lambda value: attnlib.attention_flops(8, 4, projections=value), "projections"),
    "naive_attention(causal)": (lambda value: benchmark.naive_attention(*qkv(), causal=value),
                                "causal"),
    "torch_sdpa(causal)": (lambda value: benchmark.torch_sdpa(*qkv(backend="torch"),
                                                              causal=value), "causal"),
    # (the factory is importable, as measuring memory in a fresh process needs)
    "compare(memory)": (lambda value: benchmark.compare({"a": partial(partial, int)}, baseline="a",
                                                        repeats=1, warmup=0, memory=value),
                        "memory"),
    "window_mask_mod(causal)": (lambda value: flex.window_mask_mod(2, value, 1), "causal"),
    "strided_mask_mod(causal)": (lambda value: flex.strided_mask_mod(2, value), "causal"),
}


def public_flags():
    """``"name(flag)"`` for every parameter annotated or defaulting to a bool in the
    public functions, classes and methods of attnlib's modules (grading aside)."""
    found = set()
    for info in pkgutil.iter_modules(attnlib.__path__):
        if info.name.startswith("_") or info.ispkg or info.name in ("execution", "restore"):
            continue  # (the last two re-export grading names for old configurations)
        module = importlib.import_module(f"attnlib.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            calls = [(name, obj)] if inspect.isfunction(obj) else []
            if inspect.isclass(obj):
                calls += [(name, obj.__init__)] + [
                    (f"{name}.{method}", f) for method, f in vars(obj).items()
                    if inspect.isfunction(f) and not method.startswith("_")]
            for label, call in calls:
                found |= {f"{label}({p.name})" for p in inspect.signature(call).parameters.values()
                          if p.annotation in (bool, "bool") or isinstance(p.default, bool)}
    return found


def test_every_public_flag_is_checked():
    assert public_flags() == set(FLAGS)


@pytest.mark.parametrize("value", ["no", 1, None, np.ones(2, dtype=bool)])
@pytest.mark.parametrize("call", FLAGS)
def test_a_flag_that_is_not_a_bool_is_a_type_error(call, value):
    run, flag = FLAGS[call]
    with pytest.raises(TypeError, match=rf"^{flag} must be True or False, got "):
        run(value)


@pytest.mark.parametrize("call", FLAGS)
def test_a_bool_flag_is_accepted(call):
    run, _ = FLAGS[call]
    for value in (True, False, np.bool_(True)):
        run(value)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", [*ATTENTION, "grouped_query_attention"])
def test_a_feature_size_of_zero_gets_the_same_error(name, backend):
    f, kwargs = ATTENTION.get(name, (GQA, {}))
    heads = (2,) if f is GQA else ()
    q, k, _ = qkv(d=0, backend=backend, heads=heads)
    _, _, v = qkv(d=3, backend=backend, heads=heads)
    shape = ", ".join(map(str, (2, *heads, 8, 0)))
    with pytest.raises(ValueError, match=rf"^q of shape \({shape}\) needs a feature size d >= 1 "
                                         r"\(last dimension\)$"):
        f(q, k, v, **kwargs)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_rope_on_a_feature_size_of_zero_gets_the_same_error(backend):
    x, _, _ = qkv(d=0, backend=backend)
    with pytest.raises(ValueError, match=r"^x of shape \(2, 8, 0\) needs a feature size d >= 1 "
                                         r"\(last dimension\)$"):
        attnlib.apply_rope(x)


# Every torch-only entry point, given a numpy array (or list) where a tensor is needed.
TENSOR_ARGS = {
    "MultiHeadAttention.forward(query)": (lambda: mha()(X.numpy()), "query"),
    "MultiHeadAttention.forward(key)": (lambda: mha()(X, X.numpy()), "key"),
    "TransformerEncoderLayer.forward(x)": (lambda: encoder()(X.numpy()), "x"),
    "BertModel(input_ids)": (lambda: BertModel(CONFIG)(IDS.tolist()), "input_ids"),
    "BertModel(token_type_ids)": (lambda: BertModel(CONFIG)(IDS, IDS.numpy()), "token_type_ids"),
    "BertModel(attention_mask)": (lambda: BertModel(CONFIG)(IDS, None, np.ones((2, 5))),
                                  "attention_mask"),
    "mask_tokens(input_ids)": (lambda: mask_tokens(IDS.numpy(), vocab_size=20, mask_token_id=1),
                               "input_ids"),
    "CausalLM(input_ids)": (lambda: lm()(PROMPT.tolist()), "input_ids"),
    "generate(input_ids)": (lambda: generate(lm(), PROMPT.numpy(), 2), "input_ids"),
    "TransformerDecoderLayer.forward(x)": (lambda: decoder_layer()(X.numpy(), X), "x"),
    "TransformerDecoderLayer.forward(memory)": (lambda: decoder_layer()(X, X.numpy()), "memory"),
    "next_token_loss(logits)": (lambda: next_token_loss(lm()(PROMPT).detach().numpy(), PROMPT), "logits"),
    "next_token_loss(input_ids)": (lambda: next_token_loss(lm()(PROMPT), PROMPT.tolist()),
                                   "input_ids"),
}


@pytest.mark.parametrize("call", TENSOR_ARGS)
def test_a_non_tensor_where_a_tensor_is_needed_is_a_type_error(call):
    run, name = TENSOR_ARGS[call]
    with pytest.raises(TypeError, match=rf"^{name} must be a torch tensor, got "):
        run()


def test_dropout_does_not_compute_the_weighted_sum_twice():
    """With dropout, MultiHeadAttention does exactly the arithmetic of the plain path
    that returns the weights: one product with the values, not two."""
    def flops(module, **kwargs):
        with FlopCounterMode(display=False) as counter:
            module(X, **kwargs)
        return counter.get_total_flops()

    torch.manual_seed(0)
    plain = mha(dropout=0.5).eval()
    training = mha(dropout=0.5).train()
    assert flops(training) == flops(plain, need_weights=True) > 0
