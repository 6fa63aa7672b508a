"""The nonlinearities φ, as a registry: the mean-field theory's (science.theory: tanh, relu) and any registered
with their torch function (`register("gelu", torch.nn.functional.gelu)`).

Torch-free (a spec validates without torch): a built-in's torch function is `torch.<name>`, looked up by the
blocks (science.models.activation) when they build; a registered one brings its own. The theory overlay and
the critical line exist only for the theory's activations (`mean_field`); the analysis draws none for others.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from reconent.errors import UserError

from .theory import ACTIVATIONS as _THEORY


@dataclass(frozen=True)
class Activation:
    name: str
    fn: Callable | None = None  # φ on tensors; None: torch.<name>
    mean_field: bool = False  # science.theory has its maths (q*, χ₁, ξ_c)


_REGISTRY: dict[str, Activation] = {n: Activation(n, None, True) for n in _THEORY}


def register(name: str, fn: Callable) -> Activation:
    """Add the activation `name` with its torch function (replacing a registered one; not a built-in)."""
    if name in _THEORY:
        raise ValueError(f"{name!r} is a built-in activation")
    _REGISTRY[name] = a = Activation(name, fn, False)
    return a


def unregister(name: str) -> Activation:
    if name in _THEORY or name not in _REGISTRY:
        raise ValueError(f"no registered activation {name!r}")
    return _REGISTRY.pop(name)


def names() -> tuple[str, ...]:
    """The built-ins in the theory's order, then the registered ones."""
    return tuple(_REGISTRY)


def get(name: str) -> Activation:
    if name not in _REGISTRY:
        raise UserError(f"unknown activation {name!r}; allowed: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]
