"""Generating text with a causal language model: greedy decoding and sampling.

One step turns the logits of the last position into the next token::

    z = logits / temperature                 # < 1 sharpens the distribution, > 1 flattens it
    z[not in the k most likely] = -inf       # top-k
    z[outside the nucleus] = -inf            # top-p: the fewest most likely tokens with mass >= p
    token ~ softmax(z)                       # drawn with torch.multinomial(generator=...)

Greedy decoding is ``top_k=1``: only the most likely token is left. With
``use_cache=True`` the model sees the prompt once, then one new token per step,
reading the keys and values of the earlier tokens from an ``attnlib.KVCache``;
with ``use_cache=False`` it reruns the whole sequence at every step. Both give the
same tokens.
"""

from __future__ import annotations

import torch

from ._common import as_token_ids, check_count, check_flag, check_positive, check_tensor


def filter_logits(logits, *, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None):
    """Next-token logits ``(..., V)`` divided by ``temperature``, with the tokens that
    top-k and top-p remove set to ``-inf``. ``softmax`` of the result is the sampling
    distribution. Ties at the top-k boundary keep every tied token.

    Args:
        logits: float tensor ``(..., V)``.
        temperature: a number > 0.
        top_k: keep the ``top_k`` (>= 1) most likely tokens; None keeps all.
        top_p: keep the smallest set of most likely tokens whose probability (after
            the temperature) reaches ``top_p``, a number in ``(0, 1]``; None keeps all.
    """
    if not check_tensor(logits, "logits").is_floating_point() or logits.ndim < 1:
        raise TypeError(f"logits must be a floating tensor of shape (..., V), got dtype "
                        f"{logits.dtype} and shape {tuple(logits.shape)}")
    temperature, top_k, top_p = _check_sampling(temperature, top_k, top_p)
    z = logits / temperature
    if top_k is not None and top_k < z.shape[-1]:
        kth = z.topk(top_k, dim=-1).values[..., -1:]             # (..., 1): the k-th largest
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        probs, order = z.softmax(-1).sort(dim=-1, descending=True)
        before = probs.cumsum(-1) - probs                          # mass of the more likely tokens
        drop_sorted = before >= top_p                              # the nucleus is already full
        drop = drop_sorted.scatter(-1, order, drop_sorted)         # back to vocabulary order
        z = z.masked_fill(drop, float("-inf"))
    return z


def _check_sampling(temperature, top_k, top_p):
    temperature = check_positive(temperature, "temperature")
    if top_k is not None:
        top_k = check_count(top_k, "top_k", 1)
    if top_p is not None:
        top_p = check_positive(top_p, "top_p")
        if top_p > 1.0:
            raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    return temperature, top_k, top_p


@torch.no_grad()
def generate(model, input_ids, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, use_cache: bool = True,
             generator: torch.Generator | None = None):
    """Continue ``input_ids`` by ``max_new_tokens`` tokens drawn from ``model``.

    Args:
        model: an ``attnlib.CausalLM`` (anything with its ``forward(ids, cache=...)``,
            ``new_cache()`` and ``config.max_positions``).
        input_ids: int64 tensor ``(B, L)``, the prompts (all of length ``L``).
        max_new_tokens: number of tokens to add (>= 0); ``L + max_new_tokens`` must
            not exceed ``model.config.max_positions``.
        temperature, top_k, top_p: see ``filter_logits``. ``top_k=1`` is greedy decoding.
        use_cache: keep the keys and values of past tokens in a ``KVCache`` (one new
            token per forward pass) instead of rerunning the whole sequence.
        generator: a ``torch.Generator`` for reproducible draws.

    Returns:
        int64 tensor ``(B, L + max_new_tokens)``: the prompts and their continuations.
    """
    temperature, top_k, top_p = _check_sampling(temperature, top_k, top_p)
    max_new_tokens = check_count(max_new_tokens, "max_new_tokens", 0)
    use_cache = check_flag(use_cache, "use_cache")
    as_token_ids(input_ids, model.config.vocab_size)
    limit = model.config.max_positions
    if input_ids.shape[1] > limit:
        raise ValueError(f"input_ids of shape {tuple(input_ids.shape)} is longer than the "
                         f"model's max_positions={limit}")
    if input_ids.shape[1] + max_new_tokens > limit:
        raise ValueError(f"max_new_tokens={max_new_tokens} after a prompt of length "
                         f"{input_ids.shape[1]} exceeds the model's max_positions={limit}")
    was_training = model.training
    model.eval()
    cache = model.new_cache() if use_cache else None
    ids, step_input = input_ids, input_ids
    for _ in range(max_new_tokens):
        logits = model(step_input if use_cache else ids, cache=cache)[:, -1]   # (B, V)
        z = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p)
        probs = z.softmax(-1).to(torch.float64)
        token = torch.multinomial(probs, 1, generator=generator)             # (B, 1)
        ids = torch.cat([ids, token], dim=1)
        step_input = token
    model.train(was_training)
    return ids
