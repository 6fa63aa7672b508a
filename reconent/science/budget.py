"""The probe's decoder budget (SCIENCE §2), in Adam steps: its default and its checkpoints.

Plain Python, no torch, so that spec validation and the CLI can resolve a budget without importing torch.
A boundary is only meaningful together with its budget: on the 4,000-image mnist5k one epoch is 63 steps and
the cutoff roughly halves against the paper's 938 (docs/budgets.md).
"""
from __future__ import annotations

import math

from reconent.errors import UserError

# One epoch of the paper's training set (60,000 MNIST images) at batch 64, the paper's decoder budget; the same
# number of steps on every dataset, so a small split is cycled in reshuffled passes.
DEFAULT_STEPS = 938
CHECKPOINT_NAMES = ("auto", "none")


def steps_per_pass(n_train: int, batch_size: int) -> int:
    """Mini-batches in one pass over `n_train` samples (the last one may be smaller)."""
    return math.ceil(n_train / batch_size)


def resolve_steps(steps: int | None, epochs: int | None, n_train: int, batch_size: int) -> int:
    """The budget in steps: `steps`, or `epochs` passes, or DEFAULT_STEPS when neither is given."""
    if steps is not None and epochs is not None:
        raise UserError(f"give the decoder budget as steps or as epochs, not both (got steps={steps}, "
                         f"epochs={epochs})")
    if steps is not None:
        if steps < 1:
            raise UserError(f"steps must be >= 1, got {steps}")
        return int(steps)
    if epochs is not None:
        if epochs < 1:
            raise UserError(f"epochs must be >= 1, got {epochs}")
        return int(epochs) * steps_per_pass(n_train, batch_size)
    return DEFAULT_STEPS


def default_checkpoints(steps: int) -> list[int]:
    """steps/16, steps/4 and steps, rounded down (938 -> 58, 234, 938): three readings a factor 4 apart."""
    return sorted({k for k in (steps // 16, steps // 4, steps) if k >= 1})


def parse_checkpoints(value, steps: int | None = None) -> list[int] | str:
    """`auto`, `none`, a list of steps or a comma-separated string of them, checked; the final `steps` is
    always a checkpoint. With `steps` None (not known yet) a name is returned as is and a list only checked."""
    if value is None or (isinstance(value, (list, tuple)) and not value):
        value = "none"
    if isinstance(value, str) and value.strip().lower() in CHECKPOINT_NAMES:
        name = value.strip().lower()
        if steps is None:
            return name
        return default_checkpoints(steps) if name == "auto" else [steps]
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        ks = sorted({int(str(k).strip()) for k in parts})
    except ValueError:
        raise UserError(f"checkpoints is 'auto', 'none' or steps such as '58,234,938', got {value!r}") from None
    if ks[0] < 1 or (steps is not None and ks[-1] > steps):
        raise UserError(f"checkpoints must lie in 1..{steps if steps is not None else 'steps'}, got {value!r}")
    if steps is None:
        return ks
    return sorted(set(ks) | {steps})


def checkpoints_text(value) -> str:
    """The checkpoints setting as stored (a string): `auto`, `none` or `58,234,938`."""
    v = parse_checkpoints(value)
    return v if isinstance(v, str) else ",".join(map(str, v))
