"""resnet: the conv stem, then `depth` residual blocks y = φ(F(x) + x) (SCIENCE §4).

F = conv → circular pad → φ → conv → circular pad, both 3×3 and N(0, σ_w²/(C·k·k)); c = 32 by
default. Each block gets one two-stage transposed-conv decoder. Residual networks have a mean
field of their own (Yang & Schoenholz 2017), not the fully connected one: no theory overlay.
"""
from __future__ import annotations

from . import Arch, register
from .cnn import STEM_STRIDES, conv_checks


def resnet(depth: int, in_shape=(1, 28, 28), channels: int = 32, activation: str = "tanh", sigma_w2: float = 1.05,
           sigma_b2: float = 2e-5, seed: int = 0):
    """The same stem as the cnn, then `depth` residual blocks; `Body.stem` = len(STEM_STRIDES)."""
    from ..models import FORWARD, Body, Residual, conv_stem, stream

    in_shape = tuple(in_shape)
    conv_checks("resnet", depth, in_shape, channels, activation, sigma_w2, sigma_b2)
    blocks = conv_stem(in_shape, channels, activation, sigma_w2, sigma_b2, seed, STEM_STRIDES)
    s = len(blocks)
    for l in range(s + 1, s + depth + 1):
        blocks.append(Residual(blocks[-1].out_shape, activation, sigma_w2, sigma_b2, stream(seed, l, FORWARD)))
    return Body(blocks, in_shape, seed, "resnet", stem=s)


def _build(depth, in_shape, *, size, activation, sigma_w2, sigma_b2, seed):
    shape = (1, *in_shape) if len(in_shape) == 2 else in_shape
    return resnet(depth, shape, ARCH.default_size if size is None else size, activation, sigma_w2, sigma_b2, seed)


ARCH = register(Arch("resnet", _build, size="channels", default_size=32, rtol=0.01, stem=len(STEM_STRIDES), mean_field=False,
                     bench={"sigma_w2": 1.05, "sigma_b2": 2e-5, "in_shape": (1, 28, 28)},
                     doc="conv stem, then depth residual blocks y = φ(F(x) + x)"))
