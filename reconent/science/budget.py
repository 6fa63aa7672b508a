"""The budgets (SCIENCE §2, §3): the probe's decoder budget in Adam steps (its default and its checkpoints), and
the rules that stop a training whose verdict is already decided within its epoch budget (`STOP_RULES`).

Plain Python, no torch, so that spec validation and the CLI can resolve a budget without importing torch.
A boundary is only meaningful together with its budget: on the 4,000-image mnist5k one epoch is 63 steps and
the cutoff roughly halves against the paper's 938 (docs/budgets.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

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


@dataclass(frozen=True)
class Extrapolate:
    """Stop a run whose accuracy, extrapolated optimistically, cannot pass the threshold within the budget.

    After e epochs of a budget of E (checked at epoch ends only, so a replay over stored per-epoch curves is
    exact): with b(t) the best accuracy up to epoch t and a window of w = max(`min_window`, ⌈`window`·e⌉)
    epochs, the recent rate is r = (b(e) − b(e−w)) / w, and the optimistic bound at the budget is
        bound = b(e) + `safety` · r · (E − e) + `margin`.
    The run stops when bound <= threshold, but never before max(`min_epochs`, ⌈`patience`·E⌉) epochs, and a
    curve that has not taken off (its best is less than `rise` of the way from its lowest accuracy to the
    threshold) never before ⌈`flat_patience`·E⌉ epochs.

    Why this shape (Domhan et al. 2015 extrapolate learning curves; this is the conservative end of it):
    learning curves are concave once they rise, so the recent rate over-estimates the future one and a
    straight line from the best point is an upper bound; `safety` 3 covers curves that still accelerate
    (a quadratic rise from chance has 2.5× its tangent's gain left at a quarter of the budget), `margin`
    the epoch-to-epoch noise of the accuracy. What no extrapolation can foresee is a curve flat at chance
    that takes off late, and on mnist5k at threshold 0.8 those are the networks at the boundary: deep ordered
    ones (σ_w² 1.2) sit at chance for 10-40 epochs (deeper: later) and the deepest chaotic ones that train for
    up to 57, then pass 20-40 epochs later (analysis/budgets). So a flat curve gets three quarters of the
    budget (`flat_patience`), and a curve that has risen, a quarter (`patience`): its plateau is what the
    extrapolation reads. The rate is read over the second half of the curve so far (`window` 1/2), because a
    risen curve can stall for a while and rise again: σ_w² 0.8 at depth 5 (analysis/boundary_mnist5k) sits at
    0.740-0.746 for eight epochs, then passes at epoch 34 of 50; read over the last fifth of the curve (an earlier
    version) the stall looked final and the run was stopped at epoch 22. A stall longer than half the curve
    still fools it (2 of 93 real runs at 50 epochs, both at the boundary: analysis/stop_rule). A slow riser that
    passes late keeps a rate that carries it over the threshold and is never stopped.
    analysis/stop_rule/replay.py replays the rule on stored full-budget curves: the verdicts it would flip and
    the epochs it saves.
    """
    patience: float = 0.25
    flat_patience: float = 0.75
    rise: float = 1 / 3
    min_epochs: int = 5
    window: float = 0.5
    min_window: int = 3
    safety: float = 3.0
    margin: float = 0.02

    def __call__(self, accuracy: Sequence[float], epochs: int, threshold: float) -> dict | None:
        """The rule's numbers when it stops the run after these epochs ({"bound", "rate"}), else None."""
        e = len(accuracy)
        if e >= epochs or e < max(self.min_epochs, math.ceil(self.patience * epochs)):
            return None
        best, w = [], max(self.min_window, math.ceil(self.window * e))
        for a in accuracy:
            best.append(max(best[-1], a) if best else a)
        low = min(accuracy)
        if best[-1] - low < self.rise * (threshold - low) and e < math.ceil(self.flat_patience * epochs):
            return None  # not taken off yet: a late take-off cannot be foreseen
        before = best[e - 1 - w] if e > w else best[0]
        rate = max(0.0, (best[-1] - before) / min(w, e - 1))
        bound = best[-1] + self.safety * rate * (epochs - e) + self.margin
        return {"bound": bound, "rate": rate} if bound <= threshold else None


# The named stop rules of `train.stop`. A change that decides a stored run differently needs a new name (or the run
# is trained again); analysis/stop_rule/replay.py audits the stored runs against the rule as it is.
STOP_RULES: dict[str, Callable | None] = {"none": None, "extrapolate": Extrapolate()}


def stop_rule(name: str):
    if name not in STOP_RULES:
        raise ValueError(f"stop must be one of {', '.join(STOP_RULES)}, got {name!r}")
    return STOP_RULES[name]


def replay(accuracy: Sequence[float], epochs: int, threshold: float,
           stop: str | Callable = "extrapolate") -> dict | None:
    """Where the rule `stop` (a name of STOP_RULES, or a rule such as Extrapolate(patience=0.3)) would have ended
    this per-epoch curve, trained with this budget and threshold, as train() applies it: {"epoch", "bound",
    "rate"}, or None when it would not have (the run passed first, or the rule never fired within the curve)."""
    rule = stop_rule(stop) if isinstance(stop, str) else stop
    for e in range(1, len(accuracy) + 1):
        if accuracy[e - 1] > threshold or rule is None:
            return None
        if (d := rule(accuracy[:e], epochs, threshold)) is not None:
            return {"epoch": e, **d}
    return None
