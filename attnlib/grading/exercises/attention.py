"""The exercises of chapter 02 (attention): inputs, references, what they teach."""

from __future__ import annotations

import numpy as np

from . import Case, Exercise

SDPA = ("attnlib.scaled_dot_product_attention", "torch.scaled_dot_product_attention")


def _additive_cases(rng: np.random.Generator) -> list[Case]:
    """Plain, batched (Lq != Lk), keys shared by the batch, a single pair, a square case."""
    def case(qs, ks, h, label=""):
        return Case((rng.normal(size=qs), rng.normal(size=ks), rng.normal(size=(h, qs[-1])),
                     rng.normal(size=(h, ks[-1])), rng.normal(size=h)), label=label)
    return [case((2, 3), (4, 5), 6), case((2, 3, 5, 4), (2, 3, 7, 2), 9),
            case((2, 3, 5, 4), (6, 2), 9, "keys without batch dimensions are shared"),
            case((1, 1), (1, 2), 1), case((3, 3), (3, 3), 4, "square: rows are queries, columns keys")]


def _additive_reference(q, k, W_q, W_k, w):
    import torch

    q, k, W_q, W_k, w = (torch.from_numpy(a) for a in (q, k, W_q, W_k, w))
    hidden = torch.tanh((q @ W_q.T).unsqueeze(-2) + (k @ W_k.T).unsqueeze(-3))  # (..., Lq, Lk, h)
    return (hidden @ w).numpy()


def _pair_cases(rng: np.random.Generator) -> list[Case]:
    cases = [Case((rng.normal(size=qs), rng.normal(size=ks)))
             for qs, ks in [((2, 3), (3, 3)), ((5, 4), (7, 4)), ((2, 3, 5, 8), (2, 3, 6, 8)),
                            ((2, 3, 5, 8), (6, 8)), ((4, 1, 3, 2), (5, 4, 2))]]
    q, k = rng.normal(size=(4, 1, 3, 2)), rng.normal(size=(5, 4, 2))
    cases += [Case((q, k), {"scale": scale}) for scale in (1.0, 0.1, 2.0, -1.0)]
    q = rng.normal(size=(6, 3))
    return cases + [Case((q, q[::-1].copy()), {"scale": 1.0}, label="square: every pair i, j")]


def _pair_reference(q, k, scale=None):
    import torch

    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    return (torch.from_numpy(q) @ torch.from_numpy(k).mT * scale).numpy()


def _masked_cases(rng: np.random.Generator) -> list[Case]:
    """Batches, broadcast masks with fully masked rows, Lq != Lk, no mask, large scores."""
    cases = []
    for shapes, mask_shape in [(((3, 4), (5, 4), (5, 2)), (3, 5)),
                               (((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)), (2, 1, 1, 6)),
                               (((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)), (4, 6)),
                               (((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)), (6,)),
                               (((7, 3), (2, 3), (2, 4)), (7, 2)),
                               (((2, 4, 3), (4, 3), (4, 1)), (2, 4, 4))]:
        mask = rng.random(mask_shape) < 0.6
        mask.reshape(-1, mask_shape[-1])[0] = False
        cases.append(Case(tuple(rng.normal(size=s) for s in shapes), {"mask": mask}))
    q, k, v = rng.normal(size=(2, 16)) * 2, rng.normal(size=(9, 16)) * 2, rng.normal(size=(9, 3))
    return cases + [Case((q, k, v), label="no mask: scale by 1/sqrt(d)"),
                    Case((q * 1e3, k, v), label="scores of size 1e4 must not overflow")]


def _masked_reference(q, k, v, mask=None):
    import attnlib
    return attnlib.scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)


def _masked_weights_are_zero(case: Case, got) -> str | None:
    mask = case.kwargs.get("mask")
    weights = got[1]
    if mask is not None and (weights[~np.broadcast_to(mask, weights.shape)] != 0).any():
        return "masked pairs must get weight exactly 0"
    return None


def _combined_cases(rng: np.random.Generator) -> list[Case]:
    return [Case((np.array(lengths), L)) for lengths, L in
            [([2, 3], 3), ([0, 5, 2], 5), ([4], 4), ([0], 3), ([1, 1], 1),
             (list(rng.integers(0, 9, size=6)), 8)]]


def _combined_reference(lengths, max_len):
    import attnlib
    return attnlib.causal_mask(max_len) & attnlib.padding_mask(lengths, max_len)[:, None, :]


def _pool_cases(rng: np.random.Generator) -> list[Case]:
    B, L, d = 5, 7, 6
    h, u = rng.normal(size=(B, L, d)), rng.normal(size=d) * 2
    lengths = np.array([7, 3, 1, 0, 5])
    padded = np.concatenate([h, rng.normal(size=(B, 4, d)) * 50], axis=1)
    padded[1, 3:7] = 99.0
    return [Case((np.array([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], [[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]]]),
                  np.array([np.sqrt(2.0), 0.0]), np.array([2, 1]))),
            Case((h, u, lengths), label="a sentence of length 0 pools to zeros"),
            Case((padded, u, lengths), label="only the padding changed: mask the padded words")]


def _pool_reference(h, u, lengths):
    import attnlib

    B, L, d = h.shape
    mask = attnlib.padding_mask(lengths, L)[:, None, :]
    out, weights = attnlib.scaled_dot_product_attention(np.broadcast_to(u, (B, 1, d)), h, h,
                                                        mask=mask, return_weights=True)
    return out[:, 0], weights[:, 0]


def _padding_weights_are_zero(case: Case, got) -> str | None:
    h, _, lengths = case.args
    weights = got[1]
    padding = np.arange(h.shape[1])[None, :] >= lengths[:, None]
    if weights.shape == padding.shape and (weights[padding] != 0).any():
        return "padded positions must get weight exactly 0"
    return None


EXERCISES = [
    Exercise("additive_scores", _additive_cases, _additive_reference,
             rtol=1e-12, atol=1e-12),
    Exercise("all_pair_scores", _pair_cases, _pair_reference, rtol=1e-12, atol=1e-12),
    Exercise("masked_attention", _masked_cases, _masked_reference, teaches=SDPA,
             hint="compute the scores, a masked softmax and the weighted sum of values",
             rtol=1e-10, atol=1e-12, check=_masked_weights_are_zero),
    Exercise("combined_mask", _combined_cases, _combined_reference,
             teaches=("attnlib.causal_mask", "attnlib.padding_mask"),
             hint="compare position indices with np.arange"),
    Exercise("attention_pool", _pool_cases, _pool_reference, teaches=SDPA,
             hint="score the words against u, softmax over the real ones, average",
             rtol=1e-10, atol=1e-12, check=_padding_weights_are_zero),
]
