"""Architectures as sequences of blocks, in the spirit of neural-tangents' stax.

A network body is a list of blocks, h_ℓ = block_ℓ(h_{ℓ-1}) for ℓ = 1..L, with h_0 = x.
Each block knows two things:
- how to initialise itself from its own random stream, W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²);
- how to build its decoder g_ℓ: h_ℓ → h_{ℓ-1}, the piece the cascade probe trains.
The probe only walks the list, so a new architecture plugs in by describing its blocks.

Every random draw comes from a stream keyed by (seed, layer, role). This is what makes the
prefix property hold: the first ℓ layers (and decoders) of a depth-L body are identical to a
depth-ℓ body with the same seed (SCIENCE §2).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

# Roles of the independent random streams: one per (seed, layer, role).
FORWARD, DECODER, HEAD, DATA = 0, 1, 2, 3

ACTIVATIONS = ("tanh", "relu")
ARCHS = ("mlp",)


def stream(seed: int, layer: int, role: int) -> torch.Generator:
    """An independent CPU generator for (seed, layer, role); SeedSequence avoids correlated streams."""
    state = np.random.SeedSequence([int(seed), int(layer), int(role)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return torch.tanh if name == "tanh" else torch.relu


def _uniform_(t: torch.Tensor, bound: float, gen: torch.Generator) -> torch.Tensor:
    # Draw on CPU from the seeded stream, so results do not depend on the device.
    with torch.no_grad():
        t.copy_(torch.empty(t.shape).uniform_(-bound, bound, generator=gen))
    return t


def _normal_(t: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    with torch.no_grad():
        t.copy_(torch.empty(t.shape).normal_(0.0, std, generator=gen))
    return t


class LinearDecoder(nn.Module):
    """g(h) = tanh(D h + c): maps a layer's output back to its input (SCIENCE §2).

    Init is PyTorch's nn.Linear default (U(±1/√fan_in) for weight and bias), drawn from the
    decoder's own stream.
    """

    def __init__(self, n_in: int, n_out: int, gen: torch.Generator):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.empty(n_out))
        bound = 1.0 / math.sqrt(n_in)
        _uniform_(self.weight, bound, gen)
        _uniform_(self.bias, bound, gen)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(torch.addmm(self.bias, h, self.weight.t()))


class Dense(nn.Module):
    """h_ℓ = φ(W h_{ℓ-1} + b), W ~ N(0, σ_w²/n_in), b ~ N(0, σ_b²)."""

    def __init__(self, n_in: int, n_out: int, act: str, sigma_w2: float, sigma_b2: float, gen: torch.Generator):
        super().__init__()
        self.n_in, self.n_out, self.act = n_in, n_out, act
        self.phi = activation(act)
        self.weight = nn.Parameter(torch.empty(n_out, n_in), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(n_out), requires_grad=False)
        _normal_(self.weight, math.sqrt(sigma_w2 / n_in), gen)
        _normal_(self.bias, math.sqrt(sigma_b2), gen)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.phi(torch.addmm(self.bias, h, self.weight.t()))

    def decoder(self, gen: torch.Generator) -> nn.Module:
        return LinearDecoder(self.n_out, self.n_in, gen)


class Body(nn.Sequential):
    """A network body without classifier head: a sequence of blocks plus its input shape."""

    def __init__(self, blocks: list[nn.Module], in_shape: tuple[int, ...], seed: int, arch: str):
        super().__init__(*blocks)
        self.in_shape, self.seed, self.arch = tuple(in_shape), seed, arch

    @property
    def depth(self) -> int:
        return len(self)

    def decoders(self) -> nn.ModuleList:
        """Fresh, untrained decoders g_1..g_L, each from its own (seed, layer) stream."""
        return nn.ModuleList(blk.decoder(stream(self.seed, l, DECODER)) for l, blk in enumerate(self, 1))

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[h_0, h_1, ..., h_L] for a batch x already shaped (N, *in_shape)."""
        hs = [x]
        for blk in self:
            hs.append(blk(hs[-1]))
        return hs

    def out_features(self) -> int:
        with torch.no_grad():
            dev = next(self.parameters()).device
            return self(torch.zeros(1, *self.in_shape, device=dev)).numel()


def mlp(depth: int, width: int = 784, in_features: int = 784, activation: str = "tanh",
        sigma_w2: float = 1.76, sigma_b2: float = 0.05, seed: int = 0) -> Body:
    """The paper's MLP body: `depth` Dense layers; 'wide' means width == in_features."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if sigma_w2 < 0 or sigma_b2 < 0:
        raise ValueError(f"variances must be >= 0, got sigma_w2={sigma_w2}, sigma_b2={sigma_b2}")
    sizes = [in_features] + [width] * depth
    blocks = [Dense(sizes[l - 1], sizes[l], activation, sigma_w2, sigma_b2, stream(seed, l, FORWARD))
              for l in range(1, depth + 1)]
    return Body(blocks, (in_features,), seed, "mlp")


def build(arch: str, depth: int, in_shape: tuple[int, ...], *, seed: int = 0, sigma_w2: float = 1.76,
          sigma_b2: float = 0.05, activation: str = "tanh", width: int | None = None, **_) -> Body:
    """Build a body by architecture name: the one place CLI and sweeps go through."""
    if arch == "mlp":
        n = int(np.prod(in_shape))
        return mlp(depth, width or n, n, activation, sigma_w2, sigma_b2, seed)
    raise ValueError(f"unknown arch {arch!r}; allowed: {', '.join(ARCHS)}")


class Classifier(nn.Module):
    """Body plus a Linear head to the classes; trained end to end for the ground truth (SCIENCE §3)."""

    def __init__(self, body: Body, n_classes: int = 10):
        super().__init__()
        self.body = body
        for p in body.parameters():  # the body is trained too, unlike in the probe
            p.requires_grad_(True)
        n = body.out_features()
        self.head = nn.Linear(n, n_classes)
        gen = stream(body.seed, 0, HEAD)
        _uniform_(self.head.weight, 1.0 / math.sqrt(n), gen)
        _uniform_(self.head.bias, 1.0 / math.sqrt(n), gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x.reshape(x.shape[0], *self.body.in_shape))
        return self.head(h.flatten(1))  # logits; cross-entropy applies the softmax
