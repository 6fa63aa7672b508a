"""mlp: the paper's fully connected network (SCIENCE §2, §4).

h_ℓ = φ(W_ℓ h_{ℓ−1} + b_ℓ), W ~ N(0, σ_w²/n_in), b ~ N(0, σ_b²), ℓ = 1..depth, on the flattened
input. 'Wide' means width == the input size (784 for MNIST), the default. Each Dense layer's
decoder is Linear + tanh (models.LinearDecoder). Mean field: the fully connected one.
"""
from __future__ import annotations

import math

from . import Arch, check_network, register


def mlp(depth: int, width: int = 784, in_features: int = 784, activation: str = "tanh",
        sigma_w2: float = 1.76, sigma_b2: float = 0.05, seed: int = 0):
    """The paper's MLP body: `depth` Dense layers of `width`, each from its own (seed, layer) stream."""
    from ..models import FORWARD, Body, Dense, stream

    check_network(depth, sigma_w2, sigma_b2, activation, width=width)
    sizes = [in_features] + [width] * depth
    blocks = [Dense(sizes[l - 1], sizes[l], activation, sigma_w2, sigma_b2, stream(seed, l, FORWARD))
              for l in range(1, depth + 1)]
    return Body(blocks, (in_features,), seed, "mlp")


def _build(depth, in_shape, *, size, activation, sigma_w2, sigma_b2, seed):
    n = math.prod(in_shape)
    return mlp(depth, size or n, n, activation, sigma_w2, sigma_b2, seed)


ARCH = register(Arch("mlp", _build, size="width", default_size=None, rtol=0.005,
                     bench={"sigma_w2": 1.76, "sigma_b2": 0.05, "in_shape": (784,)},
                     doc="fully connected; width = the input size by default"))
