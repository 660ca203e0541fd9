"""A small BERT: embeddings, a post-LN encoder stack, the [CLS] pooler and the MLM head.

Shapes, for a batch of ``B`` sequences of ``L`` token ids and width ``E``::

    x = word[ids] + token_type[types] + position[0..L-1]   # (B, L, E): learned positions, at the input
    x = LayerNorm(x)
    x = layer_n(... layer_1(x))                            # attnlib.TransformerEncoderLayer, post-LN, GELU
    pooled = tanh(W_p x[:, 0] + b_p)                       # (B, E): the [CLS] position
    logits = LayerNorm(gelu(W_t x + b_t)) @ word^T + b     # (B, L, V): tied to the word embeddings

The parameters load from Hugging Face ``transformers`` (``load_hf_state_dict``),
and the outputs then match ``transformers.BertModel`` / ``BertForMaskedLM``.
``transformers`` itself is not needed to run this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ._common import (check_count, check_dropout, check_flag, check_positive, check_real,
                      check_tensor)
from .encoder import TransformerEncoderLayer

IGNORE_INDEX = -100   # label of the positions the MLM loss skips (torch's cross_entropy default)


@dataclass(frozen=True)
class BertConfig:
    """Sizes of a BERT model (BERT-base: 30522, 768, 12, 12, 3072, 512)."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            check_count(getattr(self, name), name, 1)
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not divisible by "
                             f"num_heads={self.num_heads}")
        check_positive(self.layer_norm_eps, "layer_norm_eps")
        check_dropout(self.dropout)

    @classmethod
    def from_hf(cls, config) -> "BertConfig":
        """The same sizes as a ``transformers.BertConfig`` (absolute positions, GELU)."""
        if getattr(config, "hidden_act", "gelu") != "gelu":
            raise ValueError(f"only hidden_act='gelu' is supported, got {config.hidden_act!r}")
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute (learned) position embeddings are supported, got "
                             f"{config.position_embedding_type!r}")
        if config.hidden_dropout_prob != config.attention_probs_dropout_prob:
            raise ValueError("attnlib uses one dropout probability, got hidden_dropout_prob="
                             f"{config.hidden_dropout_prob} and attention_probs_dropout_prob="
                             f"{config.attention_probs_dropout_prob}")
        return cls(config.vocab_size, config.hidden_size, config.num_hidden_layers,
                   config.num_attention_heads, config.intermediate_size,
                   config.max_position_embeddings, config.type_vocab_size,
                   config.layer_norm_eps, config.hidden_dropout_prob)


class BertOutput(NamedTuple):
    """What ``BertModel`` returns."""
    last_hidden_state: torch.Tensor      # (B, L, E)
    pooler_output: torch.Tensor | None   # (B, E), or None without a pooler
    attentions: tuple | None             # per layer (B, H, L, L), if need_weights


class BertEmbeddings(nn.Module):
    """Token + segment + learned absolute position embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        e = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, e)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, e)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, e)
        self.norm = nn.LayerNorm(e, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids, token_type_ids):
        """``(B, L)`` ids and token types -> ``(B, L, E)``."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)     # (L,)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(positions)      # (B, L, E) + (L, E)
        return self.dropout(self.norm(x))


class BertModel(nn.Module):
    """The BERT encoder: ``(B, L)`` token ids -> ``(B, L, E)`` states and the pooled [CLS]."""

    def __init__(self, config: BertConfig, *, add_pooling_layer: bool = True):
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be an attnlib BertConfig, got {type(config).__name__}"
                            " (use BertConfig.from_hf for a transformers config)")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(config.hidden_size, config.num_heads, config.intermediate_size,
                                    dropout=config.dropout, activation="gelu", norm_first=False,
                                    layer_norm_eps=config.layer_norm_eps)
            for _ in range(config.num_layers))
        for layer in self.layers:
            layer.dropout = nn.Identity()    # BERT has no dropout inside the feed-forward layer
        self.pooler = (nn.Linear(config.hidden_size, config.hidden_size)
                       if check_flag(add_pooling_layer, "add_pooling_layer") else None)
        self.apply(init_bert_weights)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, *,
                need_weights=False):
        """Encode a batch.

        Args:
            input_ids: int64 tensor ``(B, L)`` of ids in ``[0, vocab_size)``,
                ``L <= max_position_embeddings``.
            token_type_ids: ``(B, L)`` segment ids (default all 0).
            attention_mask: ``(B, L)``, 1/True = token, 0/False = padding (default
                all tokens). Padding is never attended to.
            need_weights: also return every layer's attention weights.

        Returns:
            ``BertOutput(last_hidden_state (B, L, E), pooler_output (B, E) or None,
            attentions)``.
        """
        token_type_ids, keep = _check_batch(self.config, input_ids, token_type_ids, attention_mask)
        mask = keep[:, None, None, :]                  # (B, 1, 1, L): keys that may be attended
        x = self.embeddings(input_ids, token_type_ids)
        attentions = []
        for layer in self.layers:
            x = layer(x, mask=mask, need_weights=need_weights)
            if need_weights:
                x, weights = x
                attentions.append(weights)
        pooled = torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None
        return BertOutput(x, pooled, tuple(attentions) if need_weights else None)

    def load_hf_state_dict(self, state_dict, *, strict: bool = True) -> "BertModel":
        """Load the weights of a ``transformers.BertModel`` (its ``state_dict()``).

        Keys may carry the ``bert.`` prefix of ``BertForMaskedLM``; head keys
        (``cls.*``) and the legacy ``position_ids`` / ``token_type_ids`` buffers
        are ignored. With ``strict``, a missing or unknown key raises ``KeyError``.
        Returns ``self``.
        """
        sd = {k.removeprefix("bert."): v for k, v in state_dict.items()
              if not k.startswith("cls.")}
        _load(self, sd, _hf_encoder_keys(self), strict=check_flag(strict, "strict"))
        return self

    @classmethod
    def from_hf(cls, hf_model) -> "BertModel":
        """A copy of a ``transformers.BertModel`` (same config and weights)."""
        model = cls(BertConfig.from_hf(hf_model.config),
                    add_pooling_layer=getattr(hf_model, "pooler", None) is not None)
        model.to(next(hf_model.parameters()).dtype)
        return model.load_hf_state_dict(hf_model.state_dict()).train(hf_model.training)


class BertMLMHead(nn.Module):
    """Masked-LM head: ``(B, L, E)`` -> logits ``(B, L, V)`` through the tied word embeddings."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))   # one bias per vocabulary entry

    def forward(self, x, word_embeddings):
        """``x (B, L, E)``, ``word_embeddings (V, E)`` (the input embedding matrix) -> ``(B, L, V)``."""
        x = self.norm(F.gelu(self.dense(x)))
        return x @ word_embeddings.T + self.bias


class BertForMaskedLM(nn.Module):
    """BERT with its masked-LM head; the output matrix is the input word embeddings (tied)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.head = BertMLMHead(config)
        self.head.apply(init_bert_weights)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        """Logits ``(B, L, V)`` over the vocabulary at every position (arguments as ``BertModel``)."""
        x = self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state
        return self.head(x, self.bert.embeddings.word_embeddings.weight)

    def load_hf_state_dict(self, state_dict, *, strict: bool = True) -> "BertForMaskedLM":
        """Load the weights of a ``transformers.BertForMaskedLM`` (its ``state_dict()``).

        ``cls.predictions.decoder.weight``, if present, must equal the word
        embeddings (the weights are tied), and ``cls.predictions.decoder.bias``
        must equal ``cls.predictions.bias``. Returns ``self``.
        """
        sd = dict(state_dict)
        word = sd.get("bert.embeddings.word_embeddings.weight")
        decoder = sd.pop("cls.predictions.decoder.weight", None)
        if decoder is not None and word is not None and not torch.equal(decoder, word):
            raise ValueError("cls.predictions.decoder.weight differs from the word embeddings; "
                             "attnlib's MLM head is tied to them")
        bias = sd.pop("cls.predictions.decoder.bias", None)
        if bias is not None:
            if "cls.predictions.bias" in sd and not torch.equal(bias, sd["cls.predictions.bias"]):
                raise ValueError("cls.predictions.decoder.bias differs from cls.predictions.bias")
            sd.setdefault("cls.predictions.bias", bias)
        keys = {f"bert.{hf}": f"bert.{ours}" for hf, ours in _hf_encoder_keys(self.bert).items()}
        keys.update({"cls.predictions.transform.dense.weight": "head.dense.weight",
                     "cls.predictions.transform.dense.bias": "head.dense.bias",
                     "cls.predictions.transform.LayerNorm.weight": "head.norm.weight",
                     "cls.predictions.transform.LayerNorm.bias": "head.norm.bias",
                     "cls.predictions.bias": "head.bias"})
        _load(self, {k if k.startswith(("bert.", "cls.")) else f"bert.{k}": v
                     for k, v in sd.items()}, keys, strict=check_flag(strict, "strict"))
        return self

    @classmethod
    def from_hf(cls, hf_model) -> "BertForMaskedLM":
        """A copy of a ``transformers.BertForMaskedLM`` (same config and weights)."""
        model = cls(BertConfig.from_hf(hf_model.config))
        model.to(next(hf_model.parameters()).dtype)
        return model.load_hf_state_dict(hf_model.state_dict()).train(hf_model.training)


def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: weights ~ N(0, std^2), biases 0, LayerNorm 1 and 0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _hf_encoder_keys(model: BertModel) -> dict[str, str]:
    """Map Hugging Face ``BertModel`` parameter names to this module's names."""
    keys = {f"embeddings.{n}.weight": f"embeddings.{n}.weight"
            for n in ("word_embeddings", "position_embeddings", "token_type_embeddings")}
    keys.update({f"embeddings.LayerNorm.{p}": f"embeddings.norm.{p}" for p in ("weight", "bias")})
    parts = {"attention.self.query": "self_attn.q_proj", "attention.self.key": "self_attn.k_proj",
             "attention.self.value": "self_attn.v_proj", "attention.output.dense": "self_attn.out_proj",
             "attention.output.LayerNorm": "norm1", "intermediate.dense": "linear1",
             "output.dense": "linear2", "output.LayerNorm": "norm2"}
    for i in range(len(model.layers)):
        for hf, ours in parts.items():
            for p in ("weight", "bias"):
                keys[f"encoder.layer.{i}.{hf}.{p}"] = f"layers.{i}.{ours}.{p}"
    if model.pooler is not None:
        keys.update({f"pooler.dense.{p}": f"pooler.{p}" for p in ("weight", "bias")})
    return keys


_BUFFERS = re.compile(r"^(bert\.)?embeddings\.(position_ids|token_type_ids)$")


def _load(module: nn.Module, state_dict: dict, keys: dict[str, str], *, strict: bool) -> None:
    """Copy ``state_dict`` (Hugging Face names) into ``module`` through the map ``keys``."""
    state = {k: v for k, v in state_dict.items() if not _BUFFERS.match(k)}
    unknown = sorted(set(state) - set(keys))
    missing = sorted(set(keys) - set(state))
    if strict and (unknown or missing):
        raise KeyError(f"the state dict does not fit a {type(module).__name__} of this config: "
                       f"missing keys {missing[:6]}, unexpected keys {unknown[:6]}")
    ours = module.state_dict()
    for hf, name in keys.items():
        if hf in state:
            if tuple(state[hf].shape) != tuple(ours[name].shape):
                raise ValueError(f"{hf} has shape {tuple(state[hf].shape)}, but {name} needs "
                                 f"{tuple(ours[name].shape)}")
            ours[name] = state[hf]
    module.load_state_dict(ours)


def _check_batch(config: BertConfig, input_ids, token_type_ids, attention_mask):
    """Validate a batch; return ``(token_type_ids, keep)`` with ``keep`` boolean ``(B, L)``."""
    if check_tensor(input_ids, "input_ids").dtype != torch.long:
        raise TypeError(f"input_ids must be an int64 tensor of shape (B, L), got dtype "
                        f"{input_ids.dtype}")
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must have shape (B, L), got shape {tuple(input_ids.shape)}")
    b, length = input_ids.shape
    if length > config.max_position_embeddings:
        raise ValueError(f"input_ids of shape {tuple(input_ids.shape)} is longer than "
                         f"max_position_embeddings={config.max_position_embeddings}")
    _check_ids(input_ids, config.vocab_size, "input_ids")
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    elif check_tensor(token_type_ids, "token_type_ids").shape != input_ids.shape:
        raise ValueError(f"token_type_ids must be a tensor of shape {(b, length)}, got "
                         f"{tuple(getattr(token_type_ids, 'shape', ()))}")
    else:
        _check_ids(token_type_ids, config.type_vocab_size, "token_type_ids")
    if attention_mask is None:
        keep = torch.ones_like(input_ids, dtype=torch.bool)
    elif check_tensor(attention_mask, "attention_mask").shape != input_ids.shape:
        raise ValueError(f"attention_mask must be a tensor of shape {(b, length)} "
                         f"(1 = token, 0 = padding), got {tuple(getattr(attention_mask, 'shape', ()))}")
    elif attention_mask.dtype != torch.bool and ((attention_mask != 0) & (attention_mask != 1)).any():
        raise ValueError("attention_mask must hold only 0 and 1 (or booleans)")
    else:
        keep = attention_mask.bool()
    return token_type_ids, keep


def _check_ids(ids, size: int, name: str) -> None:
    if ids.dtype != torch.long:
        raise TypeError(f"{name} must be an int64 tensor, got dtype {ids.dtype}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= size):
        raise ValueError(f"{name} must lie in [0, {size}), got values in "
                         f"[{ids.min().item()}, {ids.max().item()}]")


def mask_tokens(input_ids, *, vocab_size: int, mask_token_id: int, special_ids=(),
                mlm_probability: float = 0.15, generator: torch.Generator | None = None):
    """BERT's masked-LM corruption of a batch of token ids.

    Each token whose id is not in ``special_ids`` is selected with probability
    ``mlm_probability``. A selected token becomes ``mask_token_id`` with
    probability 0.8, a random token with probability 0.1 (drawn uniformly from
    the ids that are neither special nor the mask token) and stays unchanged with
    probability 0.1.

    Args:
        input_ids: integer tensor of any shape, e.g. ``(B, L)``, ids in ``[0, vocab_size)``.
        vocab_size: the number of token ids.
        mask_token_id: the id of ``[MASK]``.
        special_ids: ids never selected ([PAD], [CLS], [SEP], ...): ints or a 1-D tensor.
        mlm_probability: the selection probability, in ``[0, 1]``.
        generator: a ``torch.Generator`` for reproducible draws.

    Returns:
        ``(inputs, labels)``, two new int64 tensors of the shape of ``input_ids``:
        the corrupted ids, and the original id at selected positions and
        ``-100`` (ignored by ``F.cross_entropy``) everywhere else.
    """
    vocab_size = check_count(vocab_size, "vocab_size", 1)
    check_tensor(input_ids, "input_ids")
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool or input_ids.is_complex():
        raise TypeError("input_ids must be an integer torch tensor, got "
                        f"{getattr(input_ids, 'dtype', type(input_ids).__name__)}")
    input_ids = input_ids.long()
    _check_ids(input_ids, vocab_size, "input_ids")
    mask_token_id = check_count(mask_token_id, "mask_token_id", 0)
    if isinstance(special_ids, torch.Tensor):
        special_ids = special_ids.tolist()
    special = sorted({check_count(i, "special_ids", 0) for i in special_ids})
    if mask_token_id >= vocab_size or (special and special[-1] >= vocab_size):
        raise ValueError(f"mask_token_id and special_ids must lie in [0, {vocab_size})")
    if not 0.0 <= check_real(mlm_probability, "mlm_probability") <= 1.0:
        raise ValueError(f"mlm_probability must lie in [0, 1], got {mlm_probability}")
    candidates = torch.tensor([i for i in range(vocab_size)
                               if i not in special and i != mask_token_id], dtype=torch.long)
    if not len(candidates):
        raise ValueError("every id is special: there is no token to draw random replacements from")

    device = input_ids.device
    shape = input_ids.shape
    is_special = torch.isin(input_ids, torch.tensor(special, dtype=torch.long, device=device))
    selected = (torch.rand(shape, generator=generator) < mlm_probability).to(device) & ~is_special
    labels = torch.where(selected, input_ids, IGNORE_INDEX)
    action = torch.rand(shape, generator=generator).to(device)      # one draw decides 80/10/10
    to_mask = selected & (action < 0.8)
    to_random = selected & (action >= 0.8) & (action < 0.9)
    random_ids = candidates[torch.randint(len(candidates), shape, generator=generator)].to(device)
    inputs = torch.where(to_mask, mask_token_id, input_ids)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, labels
