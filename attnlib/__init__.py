"""attnlib: the attention library built chapter by chapter in the attention book.

Shapes follow torch, ``(..., L, d)`` with heads as a leading dimension
``(B, H, L, d)``. Masks are boolean with True = may attend. The functional core
accepts numpy arrays and torch tensors and returns the type it was given.
"""

from .attention import scaled_dot_product_attention
from .masks import causal_mask, padding_mask
from .softmax import log_softmax, softmax

__all__ = [
    "softmax", "log_softmax",
    "scaled_dot_product_attention", "causal_mask", "padding_mask",
]
__version__ = "0.1.0"
