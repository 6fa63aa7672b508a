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


def differential_entropy(xhat: torch.Tensor, eps: float = EPS) -> float:
    """Gaussian differential entropy over a batch: H = mean_i[½ ln(2πe) + ln σ_i].

    Each sample is normalised as in `as_distribution` (shifted to ≥ 0, then divided by its sum;
    a plain divide-by-sum is ill-defined for tanh outputs that sum to about 0), and σ_i is pixel
    i's standard deviation across the batch. ε keeps ln finite for pixels that never vary.
    """
    return differential_entropy_from_std(as_distribution(xhat, eps).std(dim=0, unbiased=False), eps)


def differential_entropy_from_std(sigma: torch.Tensor, eps: float = EPS) -> float:
    """H from the per-pixel standard deviations σ_i (lets callers stream the moments)."""
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


def cutoff(S: np.ndarray, rtol: float = 0.005) -> int:
    """The paper's cutoff: normalise per sample, median over samples, then walk inwards.

    The cutoff is the predicted maximum trainable depth; 0.005 is the MLP default, 0.01 for CNN/ResNet.
    """
    return cutoff_from_normalised(np.median(normalised(S), axis=1), rtol)
