"""attnlib: the attention library built chapter by chapter in the attention book.

Shapes follow torch, ``(..., L, d)`` with heads as a leading dimension
``(B, H, L, d)``. Masks are boolean with True = may attend. The functional core
accepts numpy arrays and torch tensors and returns the type it was given.
"""

from .softmax import log_softmax, softmax

__all__ = ["softmax", "log_softmax"]
__version__ = "0.1.0"
