"""Reconstruction entropies and the cutoff rule (SCIENCE §2). Plain functions on arrays."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

EPS = 1e-12


def as_distribution(x: torch.Tensor, eps: float = EPS, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Each sample as a distribution over pixel positions: shift to ≥ 0, add ε, divide by the sum.

    The shift makes the result invariant to adding a constant to the pixels; it is not a histogram
    of intensities.
    """
    # float64 by default: sums over ~1000 tiny terms, and ln of ratios near 1. The probe's
    # `entropy_dtype` setting may pick float32 (docs/performance.md, "Deep probes").
    x = x.flatten(1).to(dtype)
    p = x - x.min(dim=1, keepdim=True).values + eps
    return p / p.sum(dim=1, keepdim=True)


def relative_entropy(x: torch.Tensor, xhat: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """S(x) = D_KL(p ‖ q) = Σ_i p_i ln(p_i/q_i) in nats, one value per sample (shape (N,))."""
    return kl(as_distribution(x, eps), as_distribution(xhat, eps))


def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """D_KL(p ‖ q) over the last axis, for distributions from `as_distribution` (broadcasts)."""
    return (p * (p.log() - q.log())).sum(dim=-1)


def differential_entropy_from_std(sigma: torch.Tensor, eps: float = EPS) -> float:
    """Gaussian differential entropy over a batch: H = mean_i[½ ln(2πe) + ln σ_i].

    σ_i is pixel i's standard deviation across the batch of reconstructions, each sample first
    normalised as in `as_distribution` (shifted to ≥ 0, divided by its sum; a plain divide-by-sum is
    ill-defined for tanh outputs that sum to about 0). The probe streams the moments and passes σ.
    ε keeps ln finite for pixels that never vary.
    """
    return float(differential_entropy_rows(sigma, eps))


def differential_entropy_rows(sigma: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """`differential_entropy_from_std` over the last axis, one value per leading index, on sigma's device."""
    return (0.5 * math.log(2 * math.pi * math.e) + torch.log(sigma + eps)).mean(dim=-1)


def normalised(S: np.ndarray) -> np.ndarray:
    """Each sample's curve divided by its value at the deepest layer. S has shape (L, n_samples)."""
    S = np.asarray(S, dtype=float)
    return S / S[-1:]


def cutoff_from_normalised(norm_median, rtol: float, skip_nan: bool = False) -> int:
    """Walk from the deepest layer towards the input; return the deepest layer (1-based) whose
    normalised median differs from 1 by more than rtol, or 0 if none does (a plateau from layer 1).

    NaN counts as "off the plateau" (a diverged profile), unless `skip_nan`: then NaN marks a layer
    that was not evaluated (the probe's `eval_depths: search`) and is passed over.
    """
    r = np.asarray(norm_median, dtype=float)
    off = np.flatnonzero(np.abs(r - 1.0) > rtol if skip_nan else ~(np.abs(r - 1.0) <= rtol))
    return int(off[-1]) + 1 if off.size else 0


class DepthCutoff(NamedTuple):
    layer: int  # the cutoff layer of the profile (cutoff_from_normalised)
    stem: int  # profile layers before the `depth` counted ones
    cutoff: int  # in units of `depth`
    censored: bool  # no plateau within the probe


def depth_cutoff(norm_median, rtol: float, depth: int) -> DepthCutoff:
    """A stored probe profile read as a predicted L* in units of the point's `depth`.

    The profile of a cnn/resnet also covers the conv stem (its layers beyond `depth`), so layer ℓ is counted
    block ℓ - stem. Null layers were not evaluated (`eval_depths: search`) and are passed over. Censored: the
    last layer's normalised value is 1 by construction, so a cutoff at the last-but-one layer means no plateau
    set in within the probe, and it can only say L* >= depth. The analysis and the boundary search's prior both
    read probes this way."""
    r = np.asarray([np.nan if v is None else v for v in norm_median], dtype=float)
    layer = cutoff_from_normalised(r, rtol, skip_nan=True)
    stem = max(r.size - int(depth), 0)
    return DepthCutoff(layer, stem, max(layer - stem, 0), bool(layer >= r.size - 1))
