"""A decoder-only language model, configurable from GPT-2 to LLaMA.

Shapes, for a batch of ``B`` sequences of ``L`` token ids, width ``E``, ``H`` query
heads and ``H_kv`` key/value heads of size ``d = E / H``::

    x = embed_tokens[ids] (+ embed_positions[0..L-1] if positions == "learned")   # (B, L, E)
    for each block:                                          # pre-norm: the residual stream x
        x = x + attn(norm1(x))                               #   is never normalised itself
        x = x + mlp(norm2(x))
    logits = norm(x) @ W_out^T                               # (B, L, V); W_out = embed_tokens if tied

    attn(h):  q = h W_q^T (B, H, L, d),  k, v = h W_k^T, h W_v^T (B, H_kv, L, d)
              q, k = rope(q), rope(k)                        # if positions == "rope"
              o = grouped_query_attention(q, k, v, causal)   # position i sees tokens j <= i only
              return merge_heads(o) W_o^T

The options, and what GPT-2 and LLaMA choose:

============  ===================  ======================
option        GPT-2                LLaMA
============  ===================  ======================
positions     ``"learned"``        ``"rope"``
norm          ``"layernorm"``      ``"rmsnorm"``
feed_forward  ``"gelu_tanh"``      ``"swiglu"``
num_kv_heads  ``num_heads``        fewer (grouped-query)
bias          True                 False
tied          True                 False
============  ===================  ======================

``CausalLM.from_hf`` copies a ``transformers`` ``GPT2LMHeadModel`` or
``LlamaForCausalLM``; the logits then match. There is no dropout: the models
here are small and trained briefly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._common import as_token_ids, check_count, check_flag, check_positive, check_tensor
from .gqa import grouped_query_attention
from .kv_cache import KVCache
from .multihead import merge_heads, split_heads
from .positional import apply_rope

POSITIONS = ("learned", "rope")
NORMS = ("layernorm", "rmsnorm")
FEED_FORWARDS = ("gelu", "gelu_tanh", "swiglu")


@dataclass(frozen=True)
class DecoderConfig:
    """Sizes and options of a ``CausalLM``.

    ``num_kv_heads`` defaults to ``num_heads`` (multi-head attention) and must divide
    it; ``d_ff`` (the feed-forward hidden size) defaults to ``4 * d_model``.
    ``max_positions`` is the longest sequence the model accepts (its context length).
    """

    vocab_size: int
    max_positions: int
    d_model: int
    num_layers: int
    num_heads: int
    num_kv_heads: int | None = None
    d_ff: int | None = None
    positions: str = "learned"
    norm: str = "layernorm"
    feed_forward: str = "gelu"
    bias: bool = True
    tie_embeddings: bool = True
    norm_eps: float = 1e-5
    rope_base: float = 10000.0

    def __post_init__(self):
        for name in ("vocab_size", "max_positions", "d_model", "num_layers", "num_heads"):
            check_count(getattr(self, name), name, 1)
        if self.num_kv_heads is None:
            object.__setattr__(self, "num_kv_heads", self.num_heads)
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        check_count(self.num_kv_heads, "num_kv_heads", 1)
        check_count(self.d_ff, "d_ff", 1)
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} is not divisible by num_kv_heads="
                             f"{self.num_kv_heads}: H % H_kv must be 0")
        for name, allowed in (("positions", POSITIONS), ("norm", NORMS),
                              ("feed_forward", FEED_FORWARDS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.positions == "rope" and self.head_dim % 2:
            raise ValueError(f"RoPE rotates pairs of features: head_dim = d_model / num_heads "
                             f"must be even, got {self.head_dim}")
        check_flag(self.bias, "bias")
        check_flag(self.tie_embeddings, "tie_embeddings")
        check_positive(self.norm_eps, "norm_eps")
        check_positive(self.rope_base, "rope_base")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads


def make_norm(config: DecoderConfig) -> nn.Module:
    """LayerNorm (with a bias if ``config.bias``) or RMSNorm over the last dim ``E``."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.d_model, eps=config.norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias)


class MLP(nn.Module):
    """``down_proj(gelu(up_proj(x)))``: ``(..., E)`` -> ``(..., E)`` through ``d_ff`` hidden units."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.down_proj = nn.Linear(config.d_ff, config.d_model, bias=config.bias)
        self.approximate = "tanh" if config.feed_forward == "gelu_tanh" else "none"

    def forward(self, x):
        return self.down_proj(F.gelu(self.up_proj(x), approximate=self.approximate))


class SwiGLU(nn.Module):
    """``down_proj(silu(gate_proj(x)) * up_proj(x))``: ``(..., E)`` -> ``(..., E)``.

    The gate decides, per hidden unit, how much of ``up_proj(x)`` passes. Three
    matrices instead of two, so LLaMA picks ``d_ff`` about ``8/3 E`` for the
    parameter count of a ``4 E`` GELU MLP.
    """

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.up_proj = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.down_proj = nn.Linear(config.d_ff, config.d_model, bias=config.bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class CausalSelfAttention(nn.Module):
    """Masked self-attention with ``H`` query heads and ``H_kv`` key/value heads, optional RoPE."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        e, d = config.d_model, config.head_dim
        self.q_proj = nn.Linear(e, config.num_heads * d, bias=config.bias)
        self.k_proj = nn.Linear(e, config.num_kv_heads * d, bias=config.bias)
        self.v_proj = nn.Linear(e, config.num_kv_heads * d, bias=config.bias)
        self.o_proj = nn.Linear(config.num_heads * d, e, bias=config.bias)

    def forward(self, x, positions, *, cache: KVCache | None = None, layer: int = 0):
        """``x (B, L, E)`` at ``positions (L,)`` -> ``(B, L, E)``.

        With a ``cache`` holding ``T`` earlier tokens, ``positions`` are
        ``T, ..., T + L - 1``, and the new keys and values are appended to it.
        """
        cfg = self.config
        q = split_heads(self.q_proj(x), cfg.num_heads)          # (B, H, L, d)
        k = split_heads(self.k_proj(x), cfg.num_kv_heads)       # (B, H_kv, L, d)
        v = split_heads(self.v_proj(x), cfg.num_kv_heads)       # (B, H_kv, L, d)
        if cfg.positions == "rope":
            q = apply_rope(q, positions, base=cfg.rope_base)
            k = apply_rope(k, positions, base=cfg.rope_base)
        past = 0
        if cache is not None:
            past = cache.keys[layer].shape[-2] if cache.keys[layer] is not None else 0
            k, v = cache.update(layer, k, v)                    # (B, H_kv, T + L, d)
        length = x.shape[1]
        if past == 0:                                           # no earlier tokens: plain causal
            o = grouped_query_attention(q, k, v, causal=True)
        elif length == 1:                                       # one new token sees every key
            o = grouped_query_attention(q, k, v)
        else:                                                   # query i sits at T + i: keys j <= T + i
            mask = torch.arange(past + length, device=x.device) <= positions[:, None]
            o = grouped_query_attention(q, k, v, mask=mask)
        return self.o_proj(merge_heads(o))                      # (B, L, E)


class DecoderBlock(nn.Module):
    """One pre-norm decoder block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.norm1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.norm2 = make_norm(config)
        self.mlp = SwiGLU(config) if config.feed_forward == "swiglu" else MLP(config)

    def forward(self, x, positions, *, cache: KVCache | None = None, layer: int = 0):
        """``(B, L, E)`` -> ``(B, L, E)``."""
        x = x + self.attn(self.norm1(x), positions, cache=cache, layer=layer)
        return x + self.mlp(self.norm2(x))


class CausalLM(nn.Module):
    """Decoder-only language model: token ids ``(B, L)`` -> next-token logits ``(B, L, V)``.

    The logits at position ``i`` depend on tokens ``0..i`` only, and score the token at
    position ``i + 1``.
    """

    def __init__(self, config: DecoderConfig):
        super().__init__()
        if not isinstance(config, DecoderConfig):
            raise TypeError(f"config must be an attnlib DecoderConfig, got {type(config).__name__}")
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.embed_positions = (nn.Embedding(config.max_positions, config.d_model)
                                if config.positions == "learned" else None)
        self.layers = nn.ModuleList(DecoderBlock(config) for _ in range(config.num_layers))
        self.norm = make_norm(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(_init_weights)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight      # one (V, E) matrix, used twice

    def forward(self, input_ids, *, cache: KVCache | None = None):
        """Logits ``(B, L, V)`` for ``input_ids`` (int64, ``(B, L)``).

        With a ``cache`` (a ``KVCache`` of ``T`` earlier tokens), ``input_ids`` are
        the tokens at positions ``T .. T + L - 1``; their keys and values are added
        to the cache. ``T + L`` must not exceed ``config.max_positions``.
        """
        if cache is not None and not isinstance(cache, KVCache):
            raise TypeError(f"cache must be an attnlib KVCache, got {type(cache).__name__}")
        past = 0 if cache is None else len(cache)
        self._check(input_ids, past, cache)
        positions = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)
        x = self.embed_tokens(input_ids)                         # (B, L, E)
        if self.embed_positions is not None:
            x = x + self.embed_positions(positions)              # (B, L, E) + (L, E)
        for i, block in enumerate(self.layers):
            x = block(x, positions, cache=cache, layer=i)
        return self.lm_head(self.norm(x))                        # (B, L, V)

    def _check(self, input_ids, past: int, cache) -> None:
        as_token_ids(input_ids, self.config.vocab_size)
        if past + input_ids.shape[1] > self.config.max_positions:
            raise ValueError(f"input_ids of shape {tuple(input_ids.shape)} after {past} cached "
                             f"tokens exceeds the model's max_positions={self.config.max_positions}")
        if cache is not None and cache.num_layers != self.config.num_layers:
            raise ValueError(f"cache has {cache.num_layers} layers but the model has "
                             f"{self.config.num_layers}: use model.new_cache()")

    def new_cache(self) -> KVCache:
        """An empty ``KVCache`` for this model."""
        return KVCache(self.config.num_layers)

    @classmethod
    def from_hf(cls, hf_model) -> "CausalLM":
        """A copy (same config and weights) of a ``transformers`` ``GPT2LMHeadModel`` or
        ``LlamaForCausalLM``."""
        kind = type(hf_model).__name__
        if kind not in _HF_LOADERS:
            raise TypeError(f"hf_model must be a GPT2LMHeadModel or LlamaForCausalLM, got {kind}")
        config, state = _HF_LOADERS[kind](hf_model)
        model = cls(config).to(next(hf_model.parameters()).dtype)
        model.load_state_dict(state)
        return model.train(hf_model.training)


def next_token_loss(logits, input_ids):
    """Mean cross-entropy of next-token prediction (teacher forcing).

    ``logits (B, L, V)`` from a causal model on ``input_ids (B, L)``: position ``i``
    predicts token ``i + 1``, so the labels are the inputs shifted left by one and the
    last position has no label. Returns a scalar tensor (in nats per token).
    """
    input_ids = as_token_ids(input_ids)
    if input_ids.shape[1] < 2:
        raise ValueError(f"input_ids must have L >= 2 tokens (the first label is token 1), got "
                         f"shape {tuple(input_ids.shape)}")
    if check_tensor(logits, "logits").ndim != 3 or logits.shape[:2] != input_ids.shape:
        raise ValueError(f"logits must have shape (B, L, V) with (B, L) = {tuple(input_ids.shape)}"
                         f" of input_ids, got shape {tuple(logits.shape)}")
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v), input_ids[:, 1:].reshape(-1))


def _init_weights(module: nn.Module, std: float = 0.02) -> None:
    """GPT-2's initialisation: weights ~ N(0, std^2), biases 0, norms 1 (and 0)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def _gpt2(hf_model):
    """Config and state dict (attnlib names) of a ``GPT2LMHeadModel``."""
    c = hf_model.config
    acts = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
    if c.activation_function not in acts:
        raise ValueError(f"GPT-2 activation {c.activation_function!r} is not supported")
    if not c.scale_attn_weights or c.scale_attn_by_inverse_layer_idx:
        raise ValueError("only GPT-2's default attention scale 1/sqrt(d) is supported")
    config = DecoderConfig(c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head,
                           d_ff=c.n_inner or 4 * c.n_embd, feed_forward=acts[c.activation_function],
                           norm_eps=c.layer_norm_epsilon, tie_embeddings=True)
    sd = hf_model.state_dict()
    e = c.n_embd
    state = {"embed_tokens.weight": sd["transformer.wte.weight"],
             "embed_positions.weight": sd["transformer.wpe.weight"],
             "lm_head.weight": sd["transformer.wte.weight"],     # tied
             "norm.weight": sd["transformer.ln_f.weight"], "norm.bias": sd["transformer.ln_f.bias"]}
    for i in range(c.n_layer):
        hf, ours = f"transformer.h.{i}.", f"layers.{i}."
        # Conv1D stores (in, out): transpose to nn.Linear's (out, in)
        w, b = sd[hf + "attn.c_attn.weight"].T, sd[hf + "attn.c_attn.bias"]
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            state[f"{ours}attn.{name}.weight"] = w[j * e:(j + 1) * e]
            state[f"{ours}attn.{name}.bias"] = b[j * e:(j + 1) * e]
        for hf_name, our_name in (("attn.c_proj", "attn.o_proj"), ("mlp.c_fc", "mlp.up_proj"),
                                  ("mlp.c_proj", "mlp.down_proj")):
            state[f"{ours}{our_name}.weight"] = sd[f"{hf}{hf_name}.weight"].T
            state[f"{ours}{our_name}.bias"] = sd[f"{hf}{hf_name}.bias"]
        for hf_name, our_name in (("ln_1", "norm1"), ("ln_2", "norm2")):
            for p in ("weight", "bias"):
                state[f"{ours}{our_name}.{p}"] = sd[f"{hf}{hf_name}.{p}"]
    return config, {k: v.contiguous() for k, v in state.items()}


def _llama(hf_model):
    """Config and state dict (attnlib names) of a ``LlamaForCausalLM``.

    Hugging Face rotates feature ``i`` of a head with feature ``i + d/2``;
    ``attnlib.apply_rope`` rotates the pairs ``(2i, 2i + 1)``. Reordering the rows of
    ``W_q`` and ``W_k`` in each head turns one layout into the other, and leaves every
    score ``q . k`` unchanged.
    """
    c = hf_model.config
    rope = getattr(c, "rope_parameters", None) or {"rope_type": "default",
                                                   "rope_theta": getattr(c, "rope_theta", 10000.0)}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"only LLaMA's default RoPE is supported, got {rope}")
    if c.hidden_act != "silu" or c.attention_bias or getattr(c, "mlp_bias", False):
        raise ValueError("only LLaMA's SwiGLU (silu) without biases is supported")
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    if head_dim * c.num_attention_heads != c.hidden_size:
        raise ValueError(f"head_dim={head_dim} * num_attention_heads must equal hidden_size")
    config = DecoderConfig(c.vocab_size, c.max_position_embeddings, c.hidden_size,
                           c.num_hidden_layers, c.num_attention_heads,
                           num_kv_heads=c.num_key_value_heads, d_ff=c.intermediate_size,
                           positions="rope", norm="rmsnorm", feed_forward="swiglu", bias=False,
                           tie_embeddings=bool(c.tie_word_embeddings), norm_eps=c.rms_norm_eps,
                           rope_base=float(rope["rope_theta"]))
    sd = hf_model.state_dict()
    half = head_dim // 2
    interleave = torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).reshape(-1)

    def rope_rows(w, heads):                      # (heads * d, E): reorder the rows of each head
        return w.reshape(heads, head_dim, -1)[:, interleave].reshape(heads * head_dim, -1)

    state = {"embed_tokens.weight": sd["model.embed_tokens.weight"],
             "norm.weight": sd["model.norm.weight"],
             "lm_head.weight": sd.get("lm_head.weight", sd["model.embed_tokens.weight"])}
    for i in range(c.num_hidden_layers):
        hf, ours = f"model.layers.{i}.", f"layers.{i}."
        state[ours + "attn.q_proj.weight"] = rope_rows(sd[hf + "self_attn.q_proj.weight"],
                                                       c.num_attention_heads)
        state[ours + "attn.k_proj.weight"] = rope_rows(sd[hf + "self_attn.k_proj.weight"],
                                                       c.num_key_value_heads)
        state[ours + "attn.v_proj.weight"] = sd[hf + "self_attn.v_proj.weight"]
        state[ours + "attn.o_proj.weight"] = sd[hf + "self_attn.o_proj.weight"]
        for name in ("gate_proj", "up_proj", "down_proj"):
            state[f"{ours}mlp.{name}.weight"] = sd[f"{hf}mlp.{name}.weight"]
        state[ours + "norm1.weight"] = sd[hf + "input_layernorm.weight"]
        state[ours + "norm2.weight"] = sd[hf + "post_attention_layernorm.weight"]
    return config, {k: v.contiguous() for k, v in state.items()}


_HF_LOADERS = {"GPT2LMHeadModel": _gpt2, "LlamaForCausalLM": _llama}
