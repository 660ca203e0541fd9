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


def randomized(layer, std, seed=0):
    """``layer`` (a torch module) in eval mode with every parameter redrawn from a
    seeded normal of standard deviation ``std``: LayerNorm weights around 1, the rest
    around 0, so that a comparison with a copy exercises every weight and bias."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            p.normal_(1.0 if name.startswith("norm") and name.endswith("weight") else 0.0, std)
    return layer.eval()
