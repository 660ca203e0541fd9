"""The exercises of chapter 04 (multi-head attention): inputs, references, what they teach."""

from __future__ import annotations

import math

import numpy as np

from . import Case, Exercise, tensor, torch_seeded
from .attention import SDPA

MHA = ("attnlib.MultiHeadAttention", "torch.nn.MultiheadAttention")


def _split_cases(rng: np.random.Generator) -> list[Case]:
    cases = [Case((rng.normal(size=shape), h)) for shape, h in
             [((1, 1, 8), 2), ((3, 5, 8), 1), ((3, 5, 8), 8), ((2, 7, 6), 3), ((4, 2, 16), 4)]]
    cases.append(Case((rng.normal(size=(2, 3, 4)).astype(np.float32), 2), label="the dtype is kept"))
    return cases + [Case((np.zeros((1, 2, e)), h), raises="ValueError", naming="n_heads",
                         label="n_heads does not divide E") for e, h in [(10, 3), (12, 5), (4, 8)]]


def _split_reference(x, n_heads):
    from attnlib.multihead import split_heads
    return split_heads(tensor(x), n_heads).numpy()


def _keeps_dtype(case: Case, got) -> str | None:
    if got.dtype != case.args[0].dtype:
        return f"should keep the dtype {case.args[0].dtype}, got {got.dtype}"
    return None


def _torch_mha(rng: np.random.Generator, e: int, h: int):
    """A ``torch.nn.MultiheadAttention(e, h)`` of float64 with weights drawn from N(0, 0.4^2)."""
    import torch

    with torch_seeded(rng), torch.no_grad():
        module = torch.nn.MultiheadAttention(e, h, batch_first=True, dtype=torch.float64)
        for parameter in module.parameters():
            parameter.normal_(0.0, 0.4)
    return module


def _mha_case(module, x, h, mask=None, torch_masks=None, label=""):
    """A case of ``mha_forward``: ``x`` and the module's weights as numpy arrays; the module
    and its masks (True = may *not* attend) for the reference."""
    weights = tuple(p.detach().numpy() for p in (module.in_proj_weight, module.in_proj_bias,
                                                 module.out_proj.weight, module.out_proj.bias))
    return Case((x, *weights, h), {} if mask is None else {"mask": mask}, label=label,
                union={"module": module, "torch_masks": torch_masks or {}})


def _mha_cases(rng: np.random.Generator) -> list[Case]:
    import torch

    cases = [_mha_case(_torch_mha(rng, e, h), rng.normal(size=(b, length, e)), h)
             for e, h, b, length in [(12, 3, 3, 6), (12, 1, 2, 4), (16, 16, 1, 3), (6, 2, 2, 1)]]
    module, x = _torch_mha(rng, 12, 3), rng.normal(size=(3, 6, 12))
    keep = np.arange(6) < np.array([6, 2, 4])[:, None]                      # (B, L) True = token
    causal = np.tril(np.ones((6, 6), dtype=bool))
    per_head = rng.random((3, 3, 6, 6)) < 0.6
    per_head[..., 0] = True
    return cases + [
        _mha_case(module, x, 3, keep[:, None, None, :], {"key_padding_mask": torch.from_numpy(~keep)},
                  "a key padding mask (B, 1, 1, L)"),
        _mha_case(module, x, 3, causal, {"attn_mask": torch.from_numpy(~causal)}, "a causal mask (L, L)"),
        _mha_case(module, x, 3, per_head, {"attn_mask": torch.from_numpy(~per_head.reshape(9, 6, 6))},
                  "a per-head mask (B, H, L, L)")]


def _mha_reference(x, *weights_and_heads, mask=None, module, torch_masks):
    """``torch.nn.MultiheadAttention`` with the same weights (its masks say True = may not attend)."""
    import torch

    t = torch.from_numpy(x)
    with torch.no_grad():
        return module(t, t, t, **torch_masks)[0].numpy()


def _self_attention_state(rng: np.random.Generator, e: int) -> dict:
    """The parameters of a ``BuggySelfAttention(e)`` of float64, drawn like torch's defaults."""
    bound = 1 / math.sqrt(e)
    return {f"{name}.{kind}": tensor(rng.uniform(-bound, bound, size=(e, e) if kind == "weight" else e))
            for name in ("query", "key", "value") for kind in ("weight", "bias")}


def _fixed_cases(rng: np.random.Generator) -> list[Case]:
    import attnlib
    import torch

    state = _self_attention_state(rng, 6)
    x = tensor(rng.normal(size=(3, 7, 6)))
    keep = attnlib.padding_mask(torch.tensor([7, 3, 5]), 7)[:, None, :]        # (B, 1, L)
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    later = x.clone()
    later[:, -1] += 1.0
    no_key = torch.ones(1, 7, 7, dtype=torch.bool)
    no_key[0, 3] = False
    return [Case((x, keep), union={"state": state}, label="a key padding mask (B, 1, L)"),
            Case((x, causal), union={"state": state}, label="a causal mask (L, L)"),
            Case((x, keep & causal), union={"state": state}, label="a padding and causal mask (B, L, L)"),
            Case((later, causal), union={"state": state},
                 label="a causal mask: the last token changed, earlier outputs must not"),
            Case((x[:1].clone(), no_key), {"backward": True}, union={"state": state},
                 label="query 3 has no key: zero weights and output, no NaN, finite gradients")]


def _fixed_call(model_class, case: Case):
    """Build ``model_class(E)`` in float64 with the case's parameters and run it on ``(x, mask)``:
    ``(out, weights)``, and the gradient of ``out.sum()`` with respect to ``x`` if asked."""
    x, mask = case.args
    model = model_class(x.shape[-1]).double()
    model.load_state_dict(case.union["state"])
    if not case.kwargs.get("backward"):
        return model(x, mask)
    x = x.clone().requires_grad_(True)
    out, weights = model(x, mask)
    out.sum().backward()
    return out, weights, x.grad


def _fixed_reference(x, mask, backward=False, *, state):
    import attnlib
    import torch
    import torch.nn.functional as F

    x = x.clone().requires_grad_(backward)
    q, k, v = (F.linear(x, state[f"{n}.weight"], state[f"{n}.bias"]) for n in ("query", "key", "value"))
    out, weights = attnlib.scaled_dot_product_attention(q, k, v, mask=mask, scale=1 / math.sqrt(x.shape[-1]),
                                                        return_weights=True)
    if not backward:
        return out, weights
    grad, = torch.autograd.grad(out.sum(), x)
    return out.detach(), weights.detach(), grad


def _fixed_check(case: Case, got) -> str | None:
    mask = case.args[1]
    out, weights = got[0], got[1]
    keep = np.broadcast_to(mask.numpy(), weights.shape)
    if (weights[~keep] != 0).any():
        return "masked keys must get weight exactly 0"
    if case.kwargs.get("backward"):
        if (out[0, 3] != 0).any():
            return "a query with no key to attend to must get an output of exactly 0"
        if not np.isfinite(got[2]).all():
            return "gradients must stay finite with a fully masked row"
    return None


def _torch_block(rng: np.random.Generator, e, h, ff_dim, norm_first, activation):
    """A float64 ``torch.nn.TransformerEncoderLayer`` with random weights (norm weights near 1),
    and its attention and feed-forward sub-layers as functions ``(B, L, E) -> (B, L, E)``."""
    import torch
    import torch.nn.functional as F

    with torch_seeded(rng):
        layer = torch.nn.TransformerEncoderLayer(e, h, ff_dim, dropout=0.0, activation=activation,
                                                 batch_first=True, norm_first=norm_first, dtype=torch.float64)
        with torch.no_grad():
            for name, p in layer.named_parameters():
                p.normal_(1.0 if name.startswith("norm") and name.endswith("weight") else 0.0, 0.3)
    layer.eval()
    act = F.gelu if activation == "gelu" else F.relu

    def attn(t):
        return layer.self_attn(t, t, t, need_weights=False)[0]

    def ff(t):
        return layer.linear2(act(layer.linear1(t)))
    return layer, attn, ff


def _block_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for norm_first in (False, True):
        for activation in ("gelu", "relu"):
            for e, h, ff_dim, b, length in [(8, 2, 16, 2, 5), (12, 3, 48, 3, 1), (6, 1, 10, 1, 7)]:
                layer, attn, ff = _torch_block(rng, e, h, ff_dim, norm_first, activation)
                cases.append(Case((tensor(rng.normal(size=(b, length, e))), attn, ff, layer.norm1, layer.norm2),
                                  {"norm_first": norm_first}, union={"layer": layer},
                                  label=f"activation {activation}"))
    layer, attn, ff = _torch_block(rng, 8, 2, 16, True, "gelu")
    return cases + [Case((tensor(rng.normal(size=(2, 4, 8))), attn, ff, layer.norm1, layer.norm2),
                         {"norm_first": True}, union={"layer": layer},
                         label="norm1 goes with attention and norm2 with the feed-forward layer")]


def _block_reference(x, attn, ff, norm1, norm2, *, norm_first, layer):
    return layer(x)


def _patch_cases(rng: np.random.Generator) -> list[Case]:
    import torch

    cases = [Case((tensor(rng.normal(size=shape)), p)) for shape, p in
             [((1, 1, 16, 16), 4), ((3, 2, 6, 9), 3), ((2, 3, 10, 4), 2), ((1, 1, 5, 5), 5), ((2, 2, 4, 4), 1)]]
    with torch_seeded(rng):
        conv = torch.nn.Conv2d(3, 8, kernel_size=4, stride=4).double()
    cases.append(Case((tensor(rng.normal(size=(2, 3, 12, 8))), 4), union={"conv": conv},
                      label="patches times the flattened kernel of a stride-4 Conv2d are its output"))
    return cases + [Case((torch.zeros(shape), p), raises="ValueError", naming="patch_size",
                         label="patch_size does not divide the image") for shape, p in
                    [((1, 1, 10, 8), 4), ((1, 1, 8, 6), 4)]]


def _patch_call(function, case: Case):
    """The patches; for the case with a convolution, the patches times its flattened kernel."""
    patches = function(*case.args)
    conv = case.union.get("conv")
    return patches if conv is None else patches @ conv.weight.detach().reshape(8, -1).T + conv.bias.detach()


def _patch_reference(images, patch_size, conv=None):
    import torch
    import torch.nn.functional as F

    if conv is None:
        return F.unfold(images, kernel_size=patch_size, stride=patch_size).transpose(1, 2)
    with torch.no_grad():
        return conv(images).flatten(2).transpose(1, 2)


EXERCISES = [
    Exercise("split_heads_np", _split_cases, _split_reference, rtol=0, atol=0, check=_keeps_dtype,
             teaches=("attnlib.multihead.split_heads",), hint="reshape to (B, L, H, d), then swap L and H"),
    Exercise("mha_forward", _mha_cases, _mha_reference, rtol=1e-10, atol=1e-12, teaches=MHA,
             hint="project with the packed weights, split the heads, attend, merge, project out"),
    Exercise("FixedSelfAttention", _fixed_cases, _fixed_reference, rtol=1e-7, atol=1e-7,
             call=_fixed_call, check=_fixed_check, teaches=(*SDPA, "attnlib.attention_weights", *MHA),
             hint="scale q k^T and take the softmax over the keys, the last axis"),
    Exercise("encoder_block", _block_cases, _block_reference, rtol=1e-7, atol=1e-7,
             teaches=("attnlib.TransformerEncoderLayer", "torch.nn.TransformerEncoderLayer"),
             hint="add each sub-layer's output to its input, with the norm before (pre-LN) or after"),
    Exercise("patchify", _patch_cases, _patch_reference, rtol=1e-7, atol=1e-7, call=_patch_call,
             teaches=("torch.nn.functional.unfold",), hint="reshape to (B, C, H/p, p, W/p, p) and permute"),
]
