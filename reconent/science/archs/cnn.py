"""cnn: the deep tanh CNN of Xiao et al. 2018 (SCIENCE §4).

The conv stem (models.conv_stem with STEM_STRIDES: 3×3 C_in→c, then two stride-2 3×3 convs, 28 → 14 → 7),
then `depth` blocks of conv 3×3 without padding → φ → circular padding 1 (7×7 → 5×5 → 7×7).
Conv weights ~ N(0, σ_w²/(C_in·k·k)), c = 128 by default, σ_b² ≈ 2e-5 in the paper's setting.
Decoders are ConvTranspose2d + tanh onto each block's input shape. With this fan-in init the
CNN has the fully connected mean field (Xiao et al.): critical at σ_w² ≈ 1.05 for σ_b² = 2e-5.
"""
from __future__ import annotations

from . import Arch, check_network, register

# The stem of the cnn and the resnet, declared once: one 3×3 conv per stride. Its length is `Arch.stem`, the
# probe layers before the `depth` counted blocks (profiles and cutoffs count from the first stem conv).
STEM_STRIDES = (1, 2, 2)


def cnn(depth: int, in_shape=(1, 28, 28), channels: int = 128, activation: str = "tanh", sigma_w2: float = 1.05,
        sigma_b2: float = 2e-5, seed: int = 0):
    """Probe layers 1..s are the stem (s = len(STEM_STRIDES) = `Body.stem`), s+1..s+depth the counted blocks."""
    from ..models import FORWARD, Body, Conv, conv_stem, stream

    in_shape = tuple(in_shape)
    conv_checks("cnn", depth, in_shape, channels, activation, sigma_w2, sigma_b2)
    blocks = conv_stem(in_shape, channels, activation, sigma_w2, sigma_b2, seed, STEM_STRIDES)
    s = len(blocks)
    for l in range(s + 1, s + depth + 1):
        blocks.append(Conv(blocks[-1].out_shape, channels, activation, sigma_w2, sigma_b2, stream(seed, l, FORWARD),
                           3, 1, 0, 1))
    return Body(blocks, in_shape, seed, "cnn", stem=s)


def conv_checks(arch: str, depth, in_shape, channels, activation, sigma_w2, sigma_b2) -> None:
    """The network settings (archs.check), then what the stem needs of the input: shared with the resnet."""
    check_network(depth, sigma_w2, sigma_b2, activation, channels=channels)
    if len(in_shape) != 3:
        raise ValueError(f"{arch} needs an image input shape (C, H, W), got {tuple(in_shape)}")
    if min(in_shape[1:]) < 9:  # after two stride-2 convs a 3×3 no-padding conv needs ≥ 3×3
        raise ValueError(f"{arch} needs images of at least 9×9, got {tuple(in_shape)}")


def _build(depth, in_shape, *, size, activation, sigma_w2, sigma_b2, seed):
    shape = (1, *in_shape) if len(in_shape) == 2 else in_shape
    return cnn(depth, shape, ARCH.default_size if size is None else size, activation, sigma_w2, sigma_b2, seed)


ARCH = register(Arch("cnn", _build, size="channels", default_size=128, rtol=0.01, stem=len(STEM_STRIDES),
                     bench={"sigma_w2": 1.05, "sigma_b2": 2e-5, "in_shape": (1, 28, 28)},
                     doc="Xiao et al. 2018 tanh CNN: conv stem, then depth 3×3 blocks with circular padding"))
