"""The key/value cache of a decoder: keys and values of past tokens, kept for the next step.

A decoder generates one token at a time. The keys and values of a token never
change once computed (a causal layer never looks forward), so each step needs
only the new token's query, key and value::

    without a cache: step t runs the model on all t tokens    -> O(t^2) attention work per layer
    with a cache:    step t runs it on the one new token and  -> O(t) attention work per layer
                     reads the t cached keys and values

The cache holds, per layer, ``k`` and ``v`` of shape ``(B, H_kv, T, d)``; its size
in bytes is ``2 * layers * H_kv * d * T * B * bytes_per_value`` (``kv_cache_bytes``).
"""

from __future__ import annotations

import torch

from ._common import check_count, check_tensor


def kv_cache_bytes(num_layers: int, num_kv_heads: int, head_dim: int, tokens: int, *,
                   batch: int = 1, bytes_per_value: int = 2) -> int:
    """Bytes of a KV cache: ``2 * num_layers * num_kv_heads * head_dim * tokens * batch * bytes_per_value``.

    The 2 counts keys and values. ``bytes_per_value`` is 2 for float16/bfloat16, 4 for
    float32. Returns an int.
    """
    sizes = [check_count(num_layers, "num_layers", 1), check_count(num_kv_heads, "num_kv_heads", 1),
             check_count(head_dim, "head_dim", 1), check_count(tokens, "tokens", 0),
             check_count(batch, "batch", 1), check_count(bytes_per_value, "bytes_per_value", 1)]
    out = 2
    for n in sizes:
        out *= n
    return out


class KVCache:
    """Keys and values of the tokens seen so far, one pair of tensors per layer.

    ``update(layer, k, v)`` appends the new keys ``k (B, H_kv, L_new, d)`` and values
    ``v (B, H_kv, L_new, dv)`` of ``layer`` and returns all of them,
    ``(B, H_kv, T + L_new, d)``. ``len(cache)`` is the number of tokens ``T`` cached
    (in layer 0, which is updated first at every step).

    Args:
        num_layers: the number of layers of the model that fills it.
    """

    def __init__(self, num_layers: int):
        self.num_layers = check_count(num_layers, "num_layers", 1)
        self.keys: list[torch.Tensor | None] = [None] * self.num_layers
        self.values: list[torch.Tensor | None] = [None] * self.num_layers

    def __len__(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[-2]

    def __repr__(self) -> str:
        return f"KVCache(num_layers={self.num_layers}, tokens={len(self)}, nbytes={self.nbytes})"

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached tensors."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Append ``k``, ``v`` (``(B, H_kv, L_new, d)``) to ``layer``; return the layer's
        keys and values so far, ``(B, H_kv, T + L_new, d)`` each."""
        layer = check_count(layer, "layer", 0)
        if layer >= self.num_layers:
            raise ValueError(f"layer must be < num_layers={self.num_layers}, got {layer}")
        for t, name in ((k, "k"), (v, "v")):
            if check_tensor(t, name).ndim != 4:
                raise ValueError(f"{name} must have shape (B, H_kv, L_new, d), got shape "
                                 f"{tuple(t.shape)}")
        old_k, old_v = self.keys[layer], self.values[layer]
        if old_k is not None:
            if old_k.shape[:2] != k.shape[:2] or old_k.shape[-1] != k.shape[-1]:
                raise ValueError(f"k of shape {tuple(k.shape)} does not fit the cached keys of "
                                 f"shape {tuple(old_k.shape)} (same B, H_kv and d needed)")
            k, v = torch.cat([old_k, k], dim=-2), torch.cat([old_v, v], dim=-2)
        self.keys[layer], self.values[layer] = k, v
        return k, v
