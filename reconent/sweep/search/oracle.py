"""A synthetic trainability oracle with a known boundary, for `reconent bench search` and the tests.

L*(σ_w²) = min(cap, 6·ξ_c(σ_w², σ_b²)) from reconent.science.theory (the paper's shape). A depth d is
trainable when d <= L*, but labels are noisy near the boundary: within ±max(2, 5% of L*) layers a label
flips with a probability that rises linearly to `flip` (0.25) at L*. Each label is drawn once per
(column, depth, seed) from the oracle's seed, so asking twice gives the same answer, as retraining the
same network would. The probe's prediction (the prior) is L* times a per-column factor from 0.7 to 1.3.

Cost (`train`): an epoch takes `epoch_seconds`·(1 + depth/10) seconds (a depth-10 network twice a depth-0 head);
a trainable network stops at its crossing epoch, late the closer it sits to L* (budget·(d/L*)³, times a factor
from 0.5 to 1.5); an untrainable one runs the budget, or, under the stop rule (`train.stop: extrapolate`), stops
between a quarter of the budget (its `patience`: a curve that rose to a plateau below the threshold) and three
quarters (its `flat_patience`: a curve still at chance), uniformly. The rule errs as measured offline
(`stop_error`, the flip rate of analysis/stop_rule/replay.py, whose goal is no flip far from the boundary): a
trainable network in the noisy band just below L* whose crossing comes after the flat patience is stopped there,
and called untrainable, with that probability.
"""
from __future__ import annotations

import numpy as np

from reconent.science import theory
from reconent.science.budget import Extrapolate

RULE = Extrapolate()  # the rule `train.stop: extrapolate` runs: its patiences bound where the oracle's runs stop


class Oracle:
    def __init__(self, sigma_w2, sigma_b2: float = 0.05, cap: int = 200, flip: float = 0.25, seed: int = 0):
        self.sigma_w2 = np.asarray(sigma_w2, float)
        self.L = np.minimum(cap, theory.trainable_depth(self.sigma_w2, sigma_b2, "tanh")).astype(float)
        self.cap, self.flip, self.seed = cap, flip, seed
        self.factor = np.random.default_rng([seed, 1]).uniform(0.7, 1.3, len(self.L))

    def prediction(self, column: int) -> float:
        """The noisy probe prediction of L* (a probe as deep as the cap cannot see beyond it)."""
        return float(min(self.cap, self.L[column] * self.factor[column]))

    def flip_probability(self, column: int, depth: int) -> float:
        L = self.L[column]
        band = max(2.0, 0.05 * L)
        return float(self.flip * max(0.0, 1 - abs(depth - L) / band))

    def label(self, column: int, depth: int, seed: int = 0) -> bool:
        u = np.random.default_rng([self.seed, 2, column, depth, seed]).random()
        return bool((depth <= self.L[column]) != (u < self.flip_probability(column, depth)))

    def train(self, column: int, depth: int, seed: int = 0, epochs: int = 100, stop: bool = True,
              stop_error: float = 0.02, epoch_seconds: float = 0.1) -> dict:
        """One synthetic training: {"label", "seconds", "epochs_run", "stopped_early"} (the same every time)."""
        u = np.random.default_rng([self.seed, 3, column, depth, seed]).random(3)
        per_epoch = epoch_seconds * (1 + depth / 10)
        label = self.label(column, depth, seed)
        if label:
            x = min(1.0, depth / max(self.L[column], 1.0))
            run = int(np.clip(np.ceil(epochs * x ** 3 * (0.5 + u[0])), 1, epochs))
            near = self.L[column] - depth <= max(2.0, 0.05 * self.L[column])  # in the noisy band below L*
            late = run > RULE.flat_patience * epochs
            if stop and near and late and u[1] < stop_error:  # the rule's error: a late take-off
                run = int(np.ceil(RULE.flat_patience * epochs))
                return {"label": False, "seconds": per_epoch * run, "epochs_run": run, "stopped_early": True}
            return {"label": True, "seconds": per_epoch * run, "epochs_run": run, "stopped_early": False}
        lo, hi = RULE.patience, RULE.flat_patience
        run = int(np.ceil(epochs * (lo + (hi - lo) * u[2]))) if stop else epochs
        return {"label": False, "seconds": per_epoch * run, "epochs_run": run, "stopped_early": bool(stop)}
