"""What each exercise's hidden check calls, with which inputs, and what it must not call.

An :class:`Exercise` is shared by both sides of a hidden check. In the learner's
kernel, :mod:`..probe` builds its cases from a seed and calls the learner's
function on them; in the grader's process, :mod:`..verdicts` builds the same
cases from the same seed and compares what came back with ``reference``, which
only the grader ever calls. One module per chapter lists its exercises.

``teaches`` names the library functions an exercise exists to teach, keys of
:data:`LIBRARY`: the learner's function may not call them (anything else of the
libraries stays allowed).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# What an exercise may teach -> how a call of it is recognised: "module:function" (a
# Python function, whose code becomes a tripwire) or "aten.<operator>" (a torch
# operator, whose CPU kernel becomes one, whichever Python name reaches it).
LIBRARY: dict[str, tuple[str, ...]] = {
    "attnlib.softmax": ("attnlib.softmax:softmax", "attnlib.softmax:_shifted_numpy",
                        "attnlib.softmax:_torch_rows"),
    "attnlib.log_softmax": ("attnlib.softmax:log_softmax",),
    "torch.softmax": ("aten._softmax", "aten._safe_softmax"),
    "torch.log_softmax": ("aten._log_softmax",),
    "torch.logsumexp": ("aten.logsumexp",),
    "attnlib.scaled_dot_product_attention": ("attnlib.attention:scaled_dot_product_attention",
                                             "attnlib.attention:_sdpa_torch"),
    "torch.scaled_dot_product_attention": ("aten.scaled_dot_product_attention",
                                           "aten._scaled_dot_product_attention_math",
                                           "aten._scaled_dot_product_flash_attention_for_cpu"),
    "attnlib.causal_mask": ("attnlib.masks:causal_mask",),
    "attnlib.padding_mask": ("attnlib.masks:padding_mask",),
    "attnlib.sinusoidal_encoding": ("attnlib.positional:sinusoidal_encoding",),
    "attnlib.apply_rope": ("attnlib.positional:apply_rope",),
    "attnlib.alibi_slopes": ("attnlib.positional:alibi_slopes",),
    "attnlib.next_token_loss": ("attnlib.decoder:next_token_loss",),
    "attnlib.filter_logits": ("attnlib.generation:filter_logits",),
    "torch.rms_norm": ("aten.rms_norm", "aten._fused_rms_norm"),
    "attnlib.local_mask": ("attnlib.sparse_masks:local_mask", "attnlib.sparse_masks:_offsets"),
    "attnlib.longformer_mask": ("attnlib.sparse_masks:longformer_mask",),
    "attnlib.sliding_window_attention": ("attnlib.local:sliding_window_attention",
                                         "attnlib.local:_banded", "attnlib.local:band_blocks"),
    "attnlib.linear_attention": ("attnlib.linear:linear_attention", "attnlib.linear:_causal_chunked"),
    "attnlib.attention_weights": ("attnlib.attention:attention_weights",),
    "attnlib.BertEmbeddings": ("attnlib.bert:BertEmbeddings.forward",),
    "attnlib.multihead.split_heads": ("attnlib.multihead:split_heads",),
    "attnlib.attention_flops": ("attnlib.cost:attention_flops",),
    "attnlib.attention_memory_bytes": ("attnlib.cost:attention_memory_bytes",),
    "torch.autograd.functional.jacobian": ("torch.autograd.functional:jacobian",
                                           "torch.autograd.functional:_autograd_grad"),
    "torch.func.jacrev": ("torch._functorch.eager_transforms:jacrev",
                          "torch._functorch.eager_transforms:jacfwd"),
    "torch.autograd.grad": ("torch.autograd:grad", "torch.autograd:backward"),
    "attnlib.MultiHeadAttention": ("attnlib.multihead:MultiHeadAttention.forward",),
    "torch.nn.MultiheadAttention": ("torch.nn.modules.activation:MultiheadAttention.forward",
                                    "torch.nn.functional:multi_head_attention_forward",
                                    "aten._native_multi_head_attention"),
    "attnlib.TransformerEncoderLayer": ("attnlib.encoder:TransformerEncoderLayer.forward",),
    "torch.nn.TransformerEncoderLayer": ("torch.nn.modules.transformer:TransformerEncoderLayer.forward",
                                         "aten._transformer_encoder_layer_fwd"),
    "torch.nn.functional.unfold": ("torch.nn.functional:unfold", "aten.im2col"),
    "attnlib.BertMLMHead": ("attnlib.bert:BertMLMHead.forward", "attnlib.bert:BertForMaskedLM.forward"),
    "attnlib.mask_tokens": ("attnlib.bert:mask_tokens",),
    "attnlib.BertModel": ("attnlib.bert:init_bert_weights",),  # every BertModel built calls it
    "attnlib.chunked_attention": ("attnlib.chunked:chunked_attention", "attnlib.chunked:_chunked_plain",
                                  "attnlib.chunked:_chunked_torch"),
    "attnlib.causal_blocks": ("attnlib.chunked:causal_blocks",),
    "attnlib.crossover_length": ("attnlib.cost:crossover_length",),
}


@dataclass(frozen=True)
class Case:
    """One call of the learner's function: ``f(*args, **kwargs)``; ``rtol``/``atol``
    override the exercise's tolerances for this case; ``label`` says what is special
    about it in a failure's message (which shows no input's values); ``union`` holds
    more keyword arguments for the reference (which an exercise's own ``call`` may
    read too); ``raises`` names the exception class the call must raise instead of
    returning, and ``naming`` a word its message must contain."""
    args: tuple
    kwargs: dict = field(default_factory=dict)
    rtol: float | None = None
    atol: float | None = None
    label: str = ""
    union: dict = field(default_factory=dict)
    raises: str = ""
    naming: str = ""


def tensor(array, dtype=None):
    """The numpy ``array`` as a torch tensor (of ``dtype``, if given)."""
    import torch

    out = torch.from_numpy(np.ascontiguousarray(array))
    return out if dtype is None else out.to(dtype)


@contextlib.contextmanager
def torch_seeded(rng: np.random.Generator):
    """While the block runs, torch's random state is seeded from ``rng``; the caller's
    (the notebook's) random state is put back afterwards."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(int(rng.integers(2**31)))
        yield


def traced_peak(function, *args):
    """``(function(*args), the peak of the Python memory allocated meanwhile, in bytes)``."""
    import tracemalloc

    tracemalloc.start()
    try:
        out = function(*args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return out, peak


def call_function(function, case: Case):
    """The default call of a case: ``function(*case.args, **case.kwargs)``."""
    return function(*case.args, **case.kwargs)


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: the learner's function ``name`` and how it is checked.

    ``cases(rng)`` builds the inputs (both sides, from the same seed);
    ``reference(*args, **kwargs, **union)`` is the expected result of a case (grader
    only); ``call(function, case)`` runs a case in
    the kernel; ``check(case, got)`` (grader only, ``got`` the learner's result as
    numbers, arrays and lists) may add a problem the comparison with the reference
    does not name, as a sentence, or ``None``.
    """
    name: str
    cases: Callable[[np.random.Generator], list[Case]]
    reference: Callable | None    # None: ``check`` alone decides
    teaches: tuple[str, ...] = ()
    hint: str = ""              # what to write instead of calling what it teaches
    rtol: float = 1e-9
    atol: float = 1e-12
    call: Callable = call_function
    check: Callable | None = None


def tripwire_targets(exercise: Exercise) -> tuple[dict[str, str], dict[str, str]]:
    """The Python functions and the torch operators ``exercise`` may not call, each
    mapped to the library name a message shows: ``(python, operators)``."""
    python, operators = {}, {}
    for name in exercise.teaches:
        for target in LIBRARY[name]:
            (operators if target.startswith("aten.") else python)[target] = name
    return python, operators


def _collect() -> dict[str, Exercise]:
    from . import (attention, bert, decoder, interview, multi_head_attention, positional_encoding,
                   quadratic_cost, softmax, sparse_attention)

    found = {}
    for module in (softmax, attention, positional_encoding, multi_head_attention, bert, decoder,
                   quadratic_cost, sparse_attention, interview):
        for exercise in module.EXERCISES:
            assert exercise.name not in found, f"two exercises named {exercise.name}"
            found[exercise.name] = exercise
    return found


EXERCISES: dict[str, Exercise] = _collect()
