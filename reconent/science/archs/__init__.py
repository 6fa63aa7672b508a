"""Architectures as a registry, in the spirit of neural-tangents' stax.

Each module of this package declares one architecture: `ARCH = register(Arch(...))` with its
builder (which blocks, in which order; the blocks build their own decoders), its defaults (what
sizes it and the default size, the cutoff rtol, the paper's setting for the benchmark) and its
mean-field mapping. The CLI's choices, spec validation, the trial, the bench and the analysis's
theory overlay all read this registry, so a new architecture is one new file here (or one
`register(...)` call from user code).

The declarations import neither torch nor Ray: a builder imports its blocks when it runs, so a
sweep spec validates without torch.
"""
from __future__ import annotations

import importlib
import math
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

from reconent.errors import UserError

from .. import activations as _activations

# The settings that size an architecture (grid axes and row columns of the same names).
SIZES = ("width", "channels")


def activations() -> tuple[str, ...]:
    """The nonlinearities φ every block supports, by name (science.activations: the theory's and registered
    ones); the spec's and the CLI's choices."""
    return _activations.names()


@dataclass(frozen=True)
class Arch:
    name: str
    # build(depth, in_shape, *, size, activation, sigma_w2, sigma_b2, seed) -> models.Body
    build: Callable
    size: str  # which of SIZES sizes it
    default_size: int | None  # None: the flattened input size
    rtol: float  # the probe's default cutoff tolerance (SCIENCE §2: 0.005 MLP, 0.01 CNN/ResNet)
    stem: int = 0  # probe layers before the `depth` counted ones (the conv stem)
    # The fully connected mean field (reconent.science.theory) describes it: true for the MLP and,
    # with the fan-in conv init, for the CNN (Xiao et al. 2018); a residual net has its own.
    mean_field: bool = True
    bench: dict = field(default_factory=dict)  # `reconent bench probe`: sigma_w2, sigma_b2, in_shape
    doc: str = ""


_REGISTRY: dict[str, Arch] = {}
_loaded = False


def register(arch: Arch) -> Arch:
    """Add `arch` to the registry (replacing one of the same name) and return it."""
    if arch.size not in SIZES:
        raise ValueError(f"arch {arch.name!r}: size must be one of {', '.join(SIZES)}, got {arch.size!r}")
    _REGISTRY[arch.name] = arch
    return arch


def unregister(name: str) -> Arch:
    """Remove the architecture `name` from the registry and return it (undoes `register`)."""
    _load()  # a later first _load() must not bring a built-in back after it was removed
    if name not in _REGISTRY:
        raise ValueError(f"unknown arch {name!r}; allowed: {', '.join(names())}")
    return _REGISTRY.pop(name)


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for m in pkgutil.iter_modules(__path__):
            if not m.name.startswith("_"):
                importlib.import_module(f"{__name__}.{m.name}")


def names() -> tuple[str, ...]:
    """The registered architectures, sorted: the order does not depend on which module was imported first."""
    _load()
    return tuple(sorted(_REGISTRY))


def get(name: str) -> Arch:
    _load()
    if name not in _REGISTRY:
        raise UserError(f"unknown arch {name!r}; allowed: {', '.join(names())}")
    return _REGISTRY[name]


def rtol(arch: str, given: float | None = None) -> float:
    """The probe's cutoff tolerance: `given`, or the architecture's default (`Arch.rtol`) when it is None. The one
    fallback the spec, the trial, `reconent probe` and `probe()` go through."""
    return float(get(arch).rtol if given is None else given)


def check(setting: str, value) -> None:
    """Check one network setting (depth, a sizing setting, a variance, the activation); a UserError naming it.

    The one check: `build`, the architectures' own builders (archs/mlp.py, cnn.py, resnet.py) and the sweep spec
    (which names the field: `grid.depth[2]: depth must be >= 1, got 0`) all call it.
    """
    if setting == "depth" or setting in SIZES:
        if value < 1:
            raise UserError(f"{setting} must be >= 1, got {value}")
    elif setting in ("sigma_w2", "sigma_b2"):
        if not (math.isfinite(value) and value >= 0):
            raise UserError(f"{setting} is a variance and must be finite and >= 0, got {value}")
    elif setting == "activation":
        _activations.get(value)
    else:
        raise ValueError(f"check() knows no setting {setting!r}")


def check_network(depth, sigma_w2, sigma_b2, activation, **sizes) -> None:
    """`check` on every setting of one network (sizes that are None take the architecture's default)."""
    for k, v in dict(depth=depth, sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=activation, **sizes).items():
        if v is not None:
            check(k, v)


def build(arch: str, depth: int, in_shape: tuple[int, ...], *, seed: int = 0, sigma_w2: float = 1.76,
          sigma_b2: float = 0.05, activation: str = "tanh", **settings):
    """Build a body by architecture name: the one place the CLI, sweeps and bench go through.

    `depth` counts the architecture's layers or blocks (cnn/resnet: after the 3-layer conv stem, so
    the body has depth + `Arch.stem` probe layers). `settings` are the sizing settings (`width` or
    `channels`, None for the default); an unknown keyword, or the other kind's size, is an error.
    """
    a = get(arch)
    unknown = sorted(set(settings) - set(SIZES))
    if unknown:
        raise ValueError(f"build() got unknown setting(s) {', '.join(unknown)}; the {arch} takes {a.size}")
    other = [k for k in SIZES if k != a.size and settings.get(k) is not None]
    if other:
        raise UserError(f"{other[0]} does not apply to the {arch}; it has {a.size}")
    size = settings.get(a.size)
    check_network(depth, sigma_w2, sigma_b2, activation, **{a.size: size})
    return a.build(int(depth), tuple(int(v) for v in in_shape), size=None if size is None else int(size),
                   activation=activation, sigma_w2=float(sigma_w2), sigma_b2=float(sigma_b2), seed=int(seed))
