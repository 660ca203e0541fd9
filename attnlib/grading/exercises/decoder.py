"""The exercises of chapter 06 (decoder): inputs, references, what they teach."""

from __future__ import annotations

import numpy as np

from . import Case, Exercise, tensor


def _loss_cases(rng: np.random.Generator) -> list[Case]:
    import torch

    cases = [Case((tensor(rng.normal(size=(b, l, v))), tensor(rng.integers(0, v, size=(b, l)))))
             for b, l, v in [(2, 6, 11), (1, 2, 3), (4, 9, 20), (3, 17, 5)]]
    ids = torch.tensor([[0, 1, 2, 3, 4]])
    one_hot = torch.nn.functional.one_hot
    return cases + [Case((one_hot(ids, 5).double() * 20, ids),
                         label="logits peaked on the current token: the labels are the next ones"),
                    Case((one_hot(torch.tensor([[1, 2, 3, 4, 0]]), 5).double() * 20, ids),
                         label="logits peaked on the next token")]


def _loss_reference(logits, input_ids):
    import attnlib
    return attnlib.next_token_loss(logits, input_ids)


def _top_p_cases(rng: np.random.Generator) -> list[Case]:
    cases = [Case((tensor(np.array([2.0, 1.0, 0.5, 0.0, -1.0])), 0.8))]
    cases += [Case((tensor(rng.normal(size=shape) * 2), p)) for shape, p in
              [((4, 30), 0.5), ((2, 3, 50), 0.95), ((7,), 0.3), ((3, 10), 1.0), ((5, 20), 1e-4),
               ((6, 10), 1e-6)]]
    return cases


def _top_p_reference(logits, p):
    import attnlib
    return attnlib.filter_logits(logits, top_p=p)


def _cache_cases(rng: np.random.Generator) -> list[Case]:
    return [Case(tuple(tensor(rng.normal(size=(2, 3, 6, 4))) for _ in range(3)),
                 label="one step after a cache of 5"),
            Case(tuple(tensor(rng.normal(size=(1, 2, 9, 8))) for _ in range(3)),
                 label="9 steps from an empty cache")]


def _cache_call(function, case: Case):
    """Decode step by step: the cache starts with the first T - 1 positions (one step
    after a cache of 5) or empty (9 steps); the outputs of all steps and the last cache."""
    import torch

    q, k, v = case.args
    start = k.shape[2] - 1 if k.shape[2] == 6 else 0
    k_cache, v_cache, rows = k[:, :, :start], v[:, :, :start], []
    for i in range(start, k.shape[2]):
        out, k_cache, v_cache = function(q[:, :, i:i + 1], k[:, :, i:i + 1], v[:, :, i:i + 1],
                                         k_cache, v_cache)
        rows.append(out)
    return torch.cat(rows, dim=2), k_cache, v_cache


def _cache_reference(q, k, v):
    import attnlib

    start = k.shape[2] - 1 if k.shape[2] == 6 else 0
    full = attnlib.scaled_dot_product_attention(q, k, v, causal=True)
    return full[:, :, start:], k, v


def _repeat_cases(rng: np.random.Generator) -> list[Case]:
    import torch

    heads = torch.arange(3.0, dtype=torch.float64).reshape(1, 3, 1, 1).expand(2, 3, 4, 2)
    return [Case((tensor(rng.normal(size=(1, 2, 5, 4))), 3)), Case((heads, 2)),
            Case((heads, 1)), Case((tensor(rng.normal(size=(3, 4, 7, 5))), 4))]


def _repeat_reference(x, n_rep):
    return x.repeat_interleave(n_rep, dim=1)


def _rms_cases(rng: np.random.Generator) -> list[Case]:
    import torch

    cases = [Case((tensor(rng.normal(size=shape) * 5 + 2), tensor(rng.normal(size=shape[-1]))),
                  {"eps": eps}) for shape in [(2, 5, 8), (3,), (4, 16), (2, 3, 4, 6)]
             for eps in (1e-6, 0.5)]
    return cases + [Case((torch.full((1, 4), 3.0, dtype=torch.float64),
                          torch.ones(4, dtype=torch.float64)), {"eps": 0.0},
                         label="the mean must not be subtracted")]


def _rms_reference(x, weight, eps=1e-6):
    import torch.nn.functional as F
    return F.rms_norm(x, (x.shape[-1],), weight, eps=eps)


EXERCISES = [
    Exercise("lm_loss", _loss_cases, _loss_reference, rtol=1e-7, atol=1e-7,
             teaches=("attnlib.next_token_loss",),
             hint="shift the labels left by one and use a cross-entropy"),
    Exercise("top_p_filter", _top_p_cases, _top_p_reference, rtol=1e-7, atol=1e-7,
             teaches=("attnlib.filter_logits",),
             hint="sort the probabilities, keep the words until their mass reaches p"),
    Exercise("attend_with_cache", _cache_cases, _cache_reference, rtol=1e-7, atol=1e-7,
             call=_cache_call),
    Exercise("repeat_kv", _repeat_cases, _repeat_reference, rtol=0, atol=0),
    Exercise("rms_norm", _rms_cases, _rms_reference, rtol=1e-7, atol=1e-7,
             teaches=("torch.rms_norm",), hint="divide by the root mean square of the last axis"),
]
