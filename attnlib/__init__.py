"""attnlib: the attention library built chapter by chapter in the attention book.

Shapes follow torch, ``(..., L, d)`` with heads as a leading dimension
``(B, H, L, d)``. Masks are boolean with True = may attend. The functional core
accepts numpy arrays and torch tensors and returns the type it was given.
"""

# chapter 01: softmax
from .softmax import log_softmax, softmax
# chapter 02: attention
from .attention import scaled_dot_product_attention
from .masks import causal_mask, padding_mask
# chapter 03: positional encoding
from .positional import alibi_bias, alibi_slopes, apply_rope, sinusoidal_encoding
# chapter 04: multi-head attention
from .multihead import MultiHeadAttention
from .encoder import TransformerEncoderLayer
# chapter 05: BERT
from .bert import BertConfig, BertForMaskedLM, BertModel, mask_tokens
from .tokenizer import WordTokenizer
from .data import load_corpus, topic_dataset
# chapter 06: decoding
from .decoder import CausalLM, DecoderConfig, next_token_loss
from .generation import filter_logits, generate
from .kv_cache import KVCache, kv_cache_bytes
from .gqa import grouped_query_attention
from .encoder_decoder import TransformerDecoderLayer
# chapter 07: the quadratic cost
from .cost import attention_flops, attention_memory_bytes, crossover_length
from .chunked import chunked_attention
# chapter 08: sparse and local attention
from .sparse_masks import (bigbird_layout, bigbird_mask, fixed_mask, global_token_index,
                           layout_to_mask, local_mask, longformer_mask, strided_mask)
from .local import longformer_attention, sliding_window_attention
from .block_sparse import bigbird_attention, block_sparse_attention
from .strided import fixed_attention, strided_attention
from .low_rank import linformer_attention, linformer_projection
from .linear import elu_feature_map, linear_attention

__all__ = [
    "softmax", "log_softmax",
    "scaled_dot_product_attention", "causal_mask", "padding_mask",
    "sinusoidal_encoding", "apply_rope", "alibi_slopes", "alibi_bias",
    "MultiHeadAttention", "TransformerEncoderLayer",
    "BertConfig", "BertModel", "BertForMaskedLM", "mask_tokens", "WordTokenizer",
    "load_corpus", "topic_dataset",
    "DecoderConfig", "CausalLM", "next_token_loss", "generate", "filter_logits", "KVCache",
    "kv_cache_bytes", "grouped_query_attention", "TransformerDecoderLayer",
    "attention_flops", "attention_memory_bytes", "crossover_length", "chunked_attention",
    "local_mask", "longformer_mask", "strided_mask", "fixed_mask", "bigbird_layout",
    "bigbird_mask", "layout_to_mask", "global_token_index",
    "sliding_window_attention", "longformer_attention", "block_sparse_attention",
    "bigbird_attention", "strided_attention", "fixed_attention",
    "linformer_attention", "linformer_projection", "linear_attention", "elu_feature_map",
]
__version__ = "0.1.0"
