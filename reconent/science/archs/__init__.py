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
from dataclasses import dataclass, field, replace
from typing import Callable

from reconent.errors import UserError

from .. import activations as _activations


@dataclass(frozen=True)
class Setting:
    """A setting that sizes an architecture: a grid axis and a nullable row column of the same name (the sweep
    derives both; null = the architecture's default)."""
    name: str
    type: type = int  # int, float or str: the grid's values and the column's type
    doc: str = ""  # the column's meaning in docs/schema.md
    check: Callable | None = None  # value -> None, raising UserError; None: a number must be >= 1


# Declared here, not by their architectures: both are stored columns of every row, the mlp's and the cnn's alike.
BUILTIN_SETTINGS = (
    Setting("width", int, "MLP hidden width; null = the input size (784 for MNIST, 1024 for CIFAR10)"),
    Setting("channels", int, "conv width of cnn/resnet; null = the arch's default"),
)
_SETTINGS: dict[str, Setting] = {}  # the settings registered architectures brought (not the built-ins)
_NETWORK = ("depth", "sigma_w2", "sigma_b2", "activation", "seed")  # build()'s own keywords


def settings() -> tuple[Setting, ...]:
    """Every setting that sizes an architecture: the built-ins, then those of registered architectures by name."""
    return (*BUILTIN_SETTINGS, *(_SETTINGS[k] for k in sorted(_SETTINGS)))


def sizes() -> tuple[str, ...]:
    """The names of `settings()`: the keywords `build` takes besides the network's."""
    return tuple(s.name for s in settings())


def activations() -> tuple[str, ...]:
    """The nonlinearities φ every block supports, by name (science.activations: the theory's and registered
    ones); the spec's and the CLI's choices."""
    return _activations.names()


@dataclass(frozen=True)
class Arch:
    name: str
    # build(depth, in_shape, *, size, activation, sigma_w2, sigma_b2, seed) -> models.Body
    build: Callable
    size: str | Setting  # the setting that sizes it: one of sizes(), or a new Setting (register() declares it)
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
    """Add `arch` to the registry (replacing one of the same name) and return it, its new setting declared."""
    if isinstance(arch.size, Setting):
        s, known = arch.size, {k.name: k for k in settings()}
        if s.type not in (int, float, str):
            raise ValueError(f"setting {s.name!r}: type must be int, float or str, got {s.type!r}")
        if s.name in known and known[s.name] != s:  # one declaration per name: it is one column
            raise ValueError(f"setting {s.name!r} is declared already, differently: {known[s.name]}")
        if s.name in _NETWORK or not s.name.isidentifier():
            raise ValueError(f"setting {s.name!r}: give a new name (a Python identifier, not one of {_NETWORK})")
        if s not in BUILTIN_SETTINGS:
            _SETTINGS[s.name] = s
        arch = replace(arch, size=s.name)
    elif arch.size not in sizes():
        raise ValueError(f"arch {arch.name!r}: size must be one of {', '.join(sizes())}, got {arch.size!r}")
    _REGISTRY[arch.name] = arch
    _prune()
    return arch


def unregister(name: str) -> Arch:
    """Remove the architecture `name` from the registry and return it (undoes `register`)."""
    _load()  # a later first _load() must not bring a built-in back after it was removed
    if name not in _REGISTRY:
        raise ValueError(f"unknown arch {name!r}; allowed: {', '.join(names())}")
    arch = _REGISTRY.pop(name)
    _prune()
    return arch


def _prune() -> None:
    """Forget the settings no registered architecture takes any more (its own setting goes with it)."""
    for k in [k for k in _SETTINGS if all(a.size != k for a in _REGISTRY.values())]:
        del _SETTINGS[k]


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
    own = {s.name: s for s in settings()}.get(setting)
    if own is not None and own.check is not None:  # a sizing setting that brings its own check
        own.check(value)
    elif setting == "depth" or (own is not None and own.type is not str):
        if value < 1:
            raise UserError(f"{setting} must be >= 1, got {value}")
    elif own is not None:  # a str setting without a check of its own takes any value
        pass
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
          sigma_b2: float = 0.05, activation: str = "tanh", **sizing):
    """Build a body by architecture name: the one place the CLI, sweeps and bench go through.

    `depth` counts the architecture's layers or blocks (cnn/resnet: after the 3-layer conv stem, so
    the body has depth + `Arch.stem` probe layers). `sizing` are the sizing settings (`width`,
    `channels` or a registered one; None for the default); an unknown keyword, or another
    architecture's size, is an error.
    """
    a, own = get(arch), {s.name: s for s in settings()}
    unknown = sorted(set(sizing) - set(own))
    if unknown:
        raise ValueError(f"build() got unknown setting(s) {', '.join(unknown)}; the {arch} takes {a.size}")
    other = [k for k in own if k != a.size and sizing.get(k) is not None]
    if other:
        raise UserError(f"{other[0]} does not apply to the {arch}; it has {a.size}")
    size = sizing.get(a.size)
    check_network(depth, sigma_w2, sigma_b2, activation, **{a.size: size})
    return a.build(int(depth), tuple(int(v) for v in in_shape), size=None if size is None else own[a.size].type(size),
                   activation=activation, sigma_w2=float(sigma_w2), sigma_b2=float(sigma_b2), seed=int(seed))
