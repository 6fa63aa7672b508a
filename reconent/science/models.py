"""Architectures as sequences of blocks, in the spirit of neural-tangents' stax.

A network body is a list of blocks, h_ℓ = block_ℓ(h_{ℓ-1}) for ℓ = 1..L, with h_0 = x.
Each block knows two things:
- how to initialise itself from its own random stream, W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²);
- how to build its decoder g_ℓ: h_ℓ → h_{ℓ-1}, the piece the cascade probe trains.
The probe only walks the list, so a new architecture plugs in by describing its blocks.

Every random draw comes from a stream keyed by (seed, layer, role). This is what makes the
prefix property hold: the first ℓ layers (and decoders) of a depth-L body are identical to a
depth-ℓ body with the same seed (SCIENCE §2).

This module holds the blocks (Dense, Conv, Residual, the conv stem) and their decoders; the
architectures that compose them are declared in `reconent.science.archs` (one module each), and
`build(arch, depth, in_shape, ...)` builds any of them by name.
Conv weights are N(0, σ_w²/(C_in·k·k)), biases N(0, σ_b²). The stem convs are probe layers with
decoders of their own (the cascade has to reach the input), so a conv body has depth + 3 probe
layers: profiles and the cutoff count layers from the first stem conv, and `Body.stem` (= 3)
converts a cutoff c into c − 3 counted blocks. Decoders are ConvTranspose2d + tanh (two stages for
a residual block), landing exactly on each block's input shape.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reconent.errors import UserError

# The blocks know nothing of the architectures built from them (science/archs imports this module, never the
# reverse). The activations are science.activations' registry.
from . import activations as _activations

# Roles of the independent random streams: one per (seed, layer, role).
FORWARD, DECODER, HEAD, DATA = 0, 1, 2, 3


def stream(seed: int, layer: int, role: int) -> torch.Generator:
    """An independent CPU generator for (seed, layer, role); SeedSequence avoids correlated streams."""
    state = np.random.SeedSequence([int(seed), int(layer), int(role)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def device(name: str | torch.device) -> torch.device:
    """The torch device for `name`; a clear ValueError, not a CUDA traceback, where there is no GPU."""
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {str(name)!r} was requested but torch sees no CUDA GPU; use device='cpu'")
    return dev


def activation(name: str):
    """φ by name, as its torch function (science.activations: a built-in's is torch.<name>)."""
    a = _activations.get(name)
    return a.fn if a.fn is not None else getattr(torch, name)


def uniform_(t: torch.Tensor, bound: float, gen: torch.Generator) -> torch.Tensor:
    # Draw on CPU from the seeded stream, so results do not depend on the device.
    with torch.no_grad():
        if t.device.type == "cpu" and t.is_contiguous():
            return t.uniform_(-bound, bound, generator=gen)  # same numbers, no temporary
        t.copy_(torch.empty(t.shape).uniform_(-bound, bound, generator=gen))
    return t


def normal_(t: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    with torch.no_grad():
        if t.device.type == "cpu" and t.is_contiguous():
            return t.normal_(0.0, std, generator=gen)
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
        uniform_(self.weight, bound, gen)
        uniform_(self.bias, bound, gen)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, h, self.weight.t()).tanh_()  # in place: no second (m·n, w) buffer


class Dense(nn.Module):
    """h_ℓ = φ(W h_{ℓ-1} + b), W ~ N(0, σ_w²/n_in), b ~ N(0, σ_b²)."""

    def __init__(self, n_in: int, n_out: int, act: str, sigma_w2: float, sigma_b2: float, gen: torch.Generator):
        super().__init__()
        self.n_in, self.n_out, self.act = n_in, n_out, act
        self.phi = activation(act)
        self.weight = nn.Parameter(torch.empty(n_out, n_in), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(n_out), requires_grad=False)
        normal_(self.weight, math.sqrt(sigma_w2 / n_in), gen)
        normal_(self.bias, math.sqrt(sigma_b2), gen)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.phi(torch.addmm(self.bias, h, self.weight.t()))

    def decoder(self, gen: torch.Generator) -> nn.Module:
        return LinearDecoder(self.n_out, self.n_in, gen)

    def probe_flops(self, batch: int) -> float:
        """Matmul work of one probe step (see reconent.bench): the forward, the decoder's forward and
        the decoder's weight gradient, 2·B·n_in·n_out each."""
        return 6.0 * batch * self.n_in * self.n_out


class Body(nn.Sequential):
    """A network body without classifier head: a sequence of blocks plus its input shape."""

    def __init__(self, blocks: list[nn.Module], in_shape: tuple[int, ...], seed: int, arch: str, stem: int = 0):
        super().__init__(*blocks)
        self.in_shape, self.seed, self.arch = tuple(in_shape), seed, arch
        # Blocks before the ones the architecture's `depth` counts (3 for cnn/resnet, 0 for the MLP).
        # They are probe layers like any other: layer ℓ of a profile is block ℓ, so the depth-D
        # cnn has D + 3 probe layers and a cutoff c means c - stem counted blocks.
        self.stem = int(stem)

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


# ---------------------------------------------------------------- convolutional blocks
# Shapes are per sample, (C, H, W). A conv block knows the shape it reads and the one it writes,
# so its decoder can be built to map back onto exactly the block's input shape.

def _conv_out(n: int, k: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - k) // stride + 1


def _conv_weight(c_in: int, c_out: int, k: int, sigma_w2: float, sigma_b2: float, gen: torch.Generator):
    """W ~ N(0, σ_w²/(C_in·k·k)), b ~ N(0, σ_b²): the fan-in convention of Xiao et al. 2018 (SCIENCE §4)."""
    w = nn.Parameter(torch.empty(c_out, c_in, k, k), requires_grad=False)
    b = nn.Parameter(torch.empty(c_out), requires_grad=False)
    normal_(w, math.sqrt(sigma_w2 / (c_in * k * k)), gen)
    normal_(b, math.sqrt(sigma_b2), gen)
    return w, b


def _circular(h: torch.Tensor, p: int) -> torch.Tensor:
    return F.pad(h, (p, p, p, p), mode="circular") if p else h


class ConvDecoder(nn.Module):
    """g(h) = tanh(convT_n(… tanh(convT_1(h)) …)): a block's output shape back to its input shape.

    Each stage is a ConvTranspose2d whose `padding` crops the full transposed output and whose
    `output_padding` adds the row/column a stride-2 conv dropped, so stage i maps `shapes[i]` onto
    exactly `shapes[i+1]` (e.g. 7×7 → 14×14, 14×14 → 28×28, 7×7 → 32 → 16… whatever the forward
    conv did). Should a size not be reachable that way, the output is cropped (or zero-padded)
    symmetrically. Init is PyTorch's ConvTranspose2d default, U(±1/√fan_in) for weight and bias
    with torch's fan_in = weight.size(1)·k·k = C_out·k·k, drawn from the decoder's own stream.
    """

    def __init__(self, shapes: list[tuple[int, int, int]], k: int, strides: list[int], paddings: list[int],
                 gen: torch.Generator):
        super().__init__()
        self.shapes = [tuple(s) for s in shapes]
        self.convs = nn.ModuleList()
        for (ci, hi, wi), (co, ho, wo), s, p in zip(self.shapes, self.shapes[1:], strides, paddings):
            full = lambda n: (n - 1) * s + k - 2 * p  # noqa: E731 -- transposed-conv size without output_padding
            op = (ho - full(hi), wo - full(wi))
            op = op if all(0 <= o < max(s, 1) for o in op) else (0, 0)
            t = nn.ConvTranspose2d(ci, co, k, stride=s, padding=p, output_padding=op)
            bound = 1.0 / math.sqrt(co * k * k)
            uniform_(t.weight, bound, gen)
            uniform_(t.bias, bound, gen)
            self.convs.append(t)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for t, shape in zip(self.convs, self.shapes[1:]):
            h = torch.tanh(fit_hw(t(h), shape[1:]))
        return h


def fit_hw(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Crop (or zero-pad) the last two dims symmetrically to hw; a no-op when they already match."""
    dh, dw = hw[0] - x.shape[-2], hw[1] - x.shape[-1]
    if dh == dw == 0:
        return x
    return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))  # negative pads crop


class Conv(nn.Module):
    """h = pad_circ(φ(conv_{k,stride,padding}(x) + b)): one conv layer of the Xiao et al. CNN.

    `padding` is the conv's zero padding; `circular` the circular padding applied after φ (the
    deep blocks use padding 0 and circular 1, so 7×7 → 5×5 → 7×7). The decoder is one transposed
    conv with the same k and stride and padding + circular as its crop, then tanh.
    """

    def __init__(self, in_shape, c_out: int, act: str, sigma_w2: float, sigma_b2: float, gen: torch.Generator,
                 k: int = 3, stride: int = 1, padding: int = 1, circular: int = 0):
        super().__init__()
        c, h, w = in_shape
        self.k, self.stride, self.padding, self.circular, self.act = k, stride, padding, circular, act
        self.phi = activation(act)
        self.weight, self.bias = _conv_weight(c, c_out, k, sigma_w2, sigma_b2, gen)
        self.conv_shape = (c_out, _conv_out(h, k, stride, padding), _conv_out(w, k, stride, padding))
        if min(self.conv_shape[1:]) < 1:
            raise ValueError(f"input {tuple(in_shape)} is too small for a {k}×{k} conv with stride {stride}")
        self.in_shape = tuple(in_shape)
        self.out_shape = (c_out, self.conv_shape[1] + 2 * circular, self.conv_shape[2] + 2 * circular)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _circular(self.phi(F.conv2d(x, self.weight, self.bias, self.stride, self.padding)), self.circular)

    def decoder(self, gen: torch.Generator) -> nn.Module:
        return ConvDecoder([self.out_shape, self.in_shape], self.k, [self.stride], [self.padding + self.circular], gen)

    def probe_flops(self, batch: int) -> float:
        """Matmul work of one probe step (see reconent.bench): conv forward, plus the transposed-conv
        decoder's forward and its weight gradient (no input gradient: h_ℓ is data)."""
        (co, hc, wc), (_, ho, wo), ci = self.conv_shape, self.out_shape, self.in_shape[0]
        kk = self.k * self.k
        return 2.0 * batch * ci * kk * co * (hc * wc + 2 * ho * wo)


class Residual(nn.Module):
    """y = φ(F(x) + x), F = conv → pad → φ → conv → pad (both convs k×k without zero padding,
    then circular padding, so the shape is kept). Two convs, both N(0, σ_w²/(C·k·k)), N(0, σ_b²),
    drawn in order from the block's stream. The decoder has two transposed-conv stages, tanh after each.
    """

    def __init__(self, shape, act: str, sigma_w2: float, sigma_b2: float, gen: torch.Generator, k: int = 3):
        super().__init__()
        c, h, w = shape
        if k % 2 != 1 or min(h, w) < k:
            raise ValueError(f"residual block needs an odd kernel no larger than the image, got k={k} on {shape}")
        self.k, self.pad, self.act = k, k // 2, act
        self.phi = activation(act)
        self.w1, self.b1 = _conv_weight(c, c, k, sigma_w2, sigma_b2, gen)
        self.w2, self.b2 = _conv_weight(c, c, k, sigma_w2, sigma_b2, gen)
        self.in_shape = self.out_shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.phi(_circular(F.conv2d(x, self.w1, self.b1), self.pad))
        f = _circular(F.conv2d(f, self.w2, self.b2), self.pad)
        return self.phi(f + x)

    def decoder(self, gen: torch.Generator) -> nn.Module:
        s = self.in_shape
        return ConvDecoder([s, s, s], self.k, [1, 1], [self.pad, self.pad], gen)

    def probe_flops(self, batch: int) -> float:
        """Two conv forwards (on (H-k+1)² outputs); two decoder stages' forward and weight gradient,
        plus the input gradient of the stage applied second (backprop reaches the first stage)."""
        c, h, w = self.in_shape
        kk = self.k * self.k
        hc, wc = h - self.k + 1, w - self.k + 1
        return 2.0 * batch * c * kk * c * (2 * hc * wc + 5 * h * w)


def conv_stem(in_shape, channels: int, act: str, sigma_w2: float, sigma_b2: float, seed: int,
              strides: tuple[int, ...]) -> list[nn.Module]:
    """The probe layers before a conv net's counted blocks: one 3×3 conv (zero padding 1) per stride, the first
    from C_in to `channels`, each followed by φ. The cnn's strides (1, 2, 2) keep the size, then halve it twice
    (28 → 14 → 7, 32 → 16 → 8; in general n → ⌈n/2⌉ → ⌈n/4⌉). They are probe layers with decoders of their own,
    since the cascade has to reach back to the input."""
    blocks = []
    shape = tuple(in_shape)
    for l, stride in enumerate(strides, 1):
        blocks.append(Conv(shape, channels, act, sigma_w2, sigma_b2, stream(seed, l, FORWARD), 3, stride, 1, 0))
        shape = blocks[-1].out_shape
    return blocks


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
        uniform_(self.head.weight, 1.0 / math.sqrt(n), gen)
        uniform_(self.head.bias, 1.0 / math.sqrt(n), gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x.reshape(x.shape[0], *self.body.in_shape))
        return self.head(h.flatten(1))  # logits; cross-entropy applies the softmax

