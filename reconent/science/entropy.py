"""Reconstruction entropies and the cutoff rule (SCIENCE §2). Plain functions on arrays."""
from __future__ import annotations

import math

import numpy as np
import torch

EPS = 1e-12


def as_distribution(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Each sample as a distribution over pixel positions: shift to ≥ 0, add ε, divide by the sum.

    The shift makes the result invariant to adding a constant to the pixels; it is not a histogram
    of intensities.
    """
    x = x.flatten(1).double()  # float64: sums over ~1000 tiny terms, and ln of ratios near 1
    p = x - x.min(dim=1, keepdim=True).values + eps
    return p / p.sum(dim=1, keepdim=True)


def relative_entropy(x: torch.Tensor, xhat: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """S(x) = D_KL(p ‖ q) = Σ_i p_i ln(p_i/q_i) in nats, one value per sample (shape (N,))."""
    p, q = as_distribution(x, eps), as_distribution(xhat, eps)
    return (p * (p.log() - q.log())).sum(dim=1)


def differential_entropy_from_std(sigma: torch.Tensor, eps: float = EPS) -> float:
    """Gaussian differential entropy over a batch: H = mean_i[½ ln(2πe) + ln σ_i].

    σ_i is pixel i's standard deviation across the batch of reconstructions, each sample first
    normalised as in `as_distribution` (shifted to ≥ 0, divided by its sum; a plain divide-by-sum is
    ill-defined for tanh outputs that sum to about 0). The probe streams the moments and passes σ.
    ε keeps ln finite for pixels that never vary.
    """
    return float((0.5 * math.log(2 * math.pi * math.e) + torch.log(sigma + eps)).mean())


def normalised(S: np.ndarray) -> np.ndarray:
    """Each sample's curve divided by its value at the deepest layer. S has shape (L, n_samples)."""
    S = np.asarray(S, dtype=float)
    return S / S[-1:]


def cutoff_from_normalised(norm_median, rtol: float) -> int:
    """Walk from the deepest layer towards the input; return the deepest layer (1-based) whose
    normalised median differs from 1 by more than rtol, or 0 if none does (a plateau from layer 1).
    """
    r = np.asarray(norm_median, dtype=float)
    off = np.flatnonzero(~(np.abs(r - 1.0) <= rtol))  # NaN counts as "off the plateau"
    return int(off[-1]) + 1 if off.size else 0
