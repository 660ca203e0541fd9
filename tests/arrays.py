"""Array helpers shared by the attnlib tests: backends, tolerances, comparisons."""

import numpy as np
import torch

BACKENDS = ["numpy", "torch"]
# Tolerance of an equivalence test, by dtype (numpy or torch).
TOL = {np.float64: 1e-12, np.float32: 1e-5, torch.float64: 1e-12, torch.float32: 1e-5}


def make(backend, x):
    """``x`` (numpy) as a numpy array or a torch tensor, by ``backend``."""
    return torch.from_numpy(np.array(x)) if backend == "torch" else x


def as_np(x):
    """``x`` (numpy array or torch tensor) as a numpy array."""
    return x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def x_of(*shape, dtype=torch.float64, seed=1):
    """A standard normal tensor of ``shape``, from its own seeded generator."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def close(a, b, dtype=torch.float64):
    """Assert two tensors agree within the tolerance of ``dtype``."""
    torch.testing.assert_close(a, b, atol=TOL[dtype], rtol=TOL[dtype])


def randomized(module, std=0.3, seed=0):
    """``module`` (a torch module: attnlib's, torch's or transformers') in eval mode with
    every parameter redrawn from a seeded normal of standard deviation ``std``: the
    weights of norm layers (LayerNorm, RMSNorm) around 1, the rest around 0, so that a
    comparison with a copy exercises every weight and bias."""
    torch.manual_seed(seed)
    drawn = set()  # (a tied weight is drawn once)
    with torch.no_grad():
        for layer in module.modules():
            norm = "Norm" in type(layer).__name__
            for name, p in layer.named_parameters(recurse=False):
                if id(p) not in drawn:
                    drawn.add(id(p))
                    p.normal_(1.0 if norm and name == "weight" else 0.0, std)
    return module.eval()


# Tolerance of chunked attention against dense attention: the tiles sum in another order.
CHUNKED_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5),
               torch.float64: dict(rtol=1e-10, atol=1e-10)}


def qkv_tensors(n, m=None, *, d=16, dv=None, batch=(2, 3), dtype=torch.float64, seed=0,
                requires_grad=False):
    """Seeded standard normal ``q (*batch, n, d)``, ``k (*batch, m, d)``, ``v (*batch, m, dv)``
    (``m = n``, ``dv = d`` by default)."""
    gen = torch.Generator().manual_seed(seed)
    m = n if m is None else m
    dv = d if dv is None else dv
    return [torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_(requires_grad)
            for shape in ((*batch, n, d), (*batch, m, d), (*batch, m, dv))]
