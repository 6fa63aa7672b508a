"""A synthetic trainability oracle with a known boundary, for `reconent bench search` and the tests.

L*(σ_w²) = min(cap, 6·ξ_c(σ_w², σ_b²)) from reconent.science.theory (the paper's shape). A depth d is
trainable when d <= L*, but labels are noisy near the boundary: within ±max(2, 5% of L*) layers a label
flips with a probability that rises linearly to `flip` (0.25) at L*. Each label is drawn once per
(column, depth, seed) from the oracle's seed, so asking twice gives the same answer, as retraining the
same network would. The probe's prediction (the prior) is L* times a per-column factor from 0.7 to 1.3.
"""
from __future__ import annotations

import numpy as np

from reconent.science import theory


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
