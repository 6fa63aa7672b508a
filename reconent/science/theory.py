"""Mean-field theory of signal propagation at initialisation (SCIENCE.md section 6).

Poole et al. 2016, Schoenholz et al. 2017: for a wide random network with weights of variance
σ_w²/fan_in and biases of variance σ_b², a pre-activation's variance q and the correlation c between
two inputs follow deterministic layer-to-layer maps. Their fixed points (q*, c*) and the slopes there
(χ₁, χ_c) give the depth scale ξ_c over which input correlations are still visible to the output,
and the empirical trainable depth is about 6·ξ_c.

All Gaussian integrals ∫Dz f(z), Dz = e^{-z²/2}/√(2π) dz, are Gauss-Hermite sums (1D for q and χ₁,
a 2D tensor grid for c and χ_c). With N = 100 nodes a side the tanh integrals are good to ~1e-10
relative at q* ≤ 1, ~1e-5 at q* ≈ 3 and ~1e-3 at q* ≈ 7 (σ_w² = 10), as tanh(√q z) steepens (tanh past
q* = Q_MAX is refused); relu's
kink costs ~2e-3 in the 2D c map (which relu's c* never needs). Floats in, floats out; no torch, no I/O.
"""

import math
from functools import lru_cache

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from reconent.errors import UserError

# Probabilists' Gauss-Hermite integrates against e^{-z²/2}; dividing the weights by √(2π) makes
# Σ w f(z) = ∫Dz f(z). N is even, so no node sits at z = 0: relu's kink is never sampled and, the
# rule being symmetric, ∫Dz relu(z)² = ∫Dz relu'(z)² = 1/2 come out exact to rounding. The 2D grid
# is the tensor product of the same 1D rule, so at c = 1 it reduces to the rule that q* and χ₁ were
# computed with (see _u and _c_map).
_N = 100
_Z1, _W1 = hermegauss(_N)
_W1 = _W1 / math.sqrt(2 * math.pi)
_ZA, _ZB = (g.ravel() for g in np.meshgrid(_Z1, _Z1, indexing="ij"))  # (z₁, z₂) on an N x N grid
_W2 = np.outer(_W1, _W1).ravel()

ACTIVATIONS = {  # name -> (φ, φ')
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
}


def _brentq(*args, **kw):  # scipy is imported on first use: the probe command needs no root finding
    from scipy.optimize import brentq

    return brentq(*args, **kw)


# tanh(√q z) steepens as q grows and 100 nodes stop resolving it: χ₁'s relative error is 4e-5 at q = 3, 6e-3 at
# 7, 1.5% at 9, 5% at 13 and 32% at 30 (against adaptive quad). Past Q_MAX we refuse rather than answer wrongly.
Q_MAX = 9.0
_CRIT_TOL = 1e-10  # |χ - 1| below this is float noise: call it critical (ξ would exceed 1e10 layers)


def _act(activation):
    if activation not in ACTIVATIONS:
        raise UserError(f"unknown activation {activation!r}; allowed: {', '.join(map(repr, ACTIVATIONS))}")
    return ACTIVATIONS[activation]


def _check(sigma_w2, sigma_b2, activation):
    sw, sb = float(sigma_w2), float(sigma_b2)
    if not (sw > 0 and sb >= 0 and math.isfinite(sw) and math.isfinite(sb)):
        raise UserError(f"need sigma_w2 > 0 and sigma_b2 >= 0, got ({sigma_w2}, {sigma_b2})")
    _act(activation)
    return sw, sb, activation


def _q_eval(q, activation):
    # Where q* is 0 or ∞ the ratios below still have finite limits: relu is positively homogeneous,
    # so φ'(√q z) and φ(√q z)/√q do not depend on q (use q = 1); tanh is linear near 0 (use q → 0⁺).
    if 0 < q < math.inf:
        return q
    return 1.0 if activation == "relu" else 1e-20


def _u(c, q):
    # A pair (u₁, u₂) of variance q and covariance q c, built from sum and difference coordinates:
    # u₁,₂ = m ± d with m = √(q(1+c)/2) z₁, d = √(q(1-c)/2) z₂. At c = 1, d = 0 and the grid collapses
    # onto the 1D rule in z₁ that q* and χ₁ were computed with.
    m, d = math.sqrt(q * (1 + c) / 2) * _ZA, math.sqrt(max(0.0, q * (1 - c) / 2)) * _ZB
    return m + d, m - d


def q_map(q, sigma_w2, sigma_b2, activation="tanh"):
    """One layer of the variance map: q ↦ σ_w² ∫Dz φ(√q z)² + σ_b²."""
    phi, _ = _act(activation)
    return float(sigma_w2 * (_W1 @ phi(math.sqrt(q) * _Z1) ** 2) + sigma_b2)


def c_map(c, sigma_w2, sigma_b2, activation="tanh"):
    """One layer of the correlation map at q = q*: c ↦ [σ_w² ∫Dz₁Dz₂ φ(u₁)φ(u₂) + σ_b²] / q*."""
    sw, sb, activation = _check(sigma_w2, sigma_b2, activation)
    q = _solve(sw, sb, activation)[0]
    # relu with q* = ∞: q grows by σ_w²/2 a layer and the bias washes out, so c' = C'/q' = 2∫φφ/q.
    return _c_map(c, 2.0 if q == math.inf else sw, _q_eval(q, activation), activation)


def _c_map(c, sw, q, activation):
    # With σ_b² = q* - σ_w² ∫Dz φ(√q* z)² at the fixed point, and ∫φ(u₁)² = ∫φ(u₂)², the map is
    #   c' = 1 - σ_w² ∫Dz₁Dz₂ [φ(u₁) - φ(u₂)]² / (2 q*).
    # This form is exact at c = 1 (u₁ = u₂), loses no digits near c = 1, and its slope there is
    # σ_w² ∫Dz φ'(√q* z)² ∫Dz z² = χ₁ on the very same 1D rule (Σ w z² = 1 exactly), so the stability of
    # c = 1 agrees with the sign of χ₁ - 1 to the last digit: no spurious c* ≈ 1 from quadrature
    # error near criticality (the textbook form relies on Stein's lemma, which quadrature breaks at
    # ~1e-5 for tanh at q ≈ 3). Where q* = 0 (σ_b² = 0, ordered) it gives the σ_b² → 0⁺ limit, since
    # σ_b²/q* → 1 - σ_w² ∫Dz φ(√q z)²/q there (1 - σ_w² for tanh, 1 - σ_w²/2 for relu).
    phi, _ = _act(activation)
    u1, u2 = _u(c, q)
    return float(1.0 - sw * (_W2 @ (phi(u1) - phi(u2)) ** 2) / (2 * q))


def _q_star(sw, sb, activation):
    if activation == "relu":
        # ∫Dz relu(√q z)² = q/2, so the map is linear, q ↦ (σ_w²/2) q + σ_b²; iterating from q = 1
        # converges to σ_b² / (1 - σ_w²/2) when σ_w² < 2 (0 without bias) and otherwise grows without
        # bound (returned as inf), except at exactly (2, 0) where every q is fixed: the network is
        # scale-free there and we pick q* = 1.
        if sw < 2:
            return sb / (1 - sw / 2)
        return 1.0 if (sw == 2 and sb == 0) else math.inf
    # tanh: ∫Dz tanh(√q z)² is increasing and concave in q, so M(q) - q has one positive root and the
    # iteration from q = 1 converges to it (monotone map). Without bias and σ_w² ≤ 1 = σ_w² tanh'(0)²,
    # that root is q = 0. We find the root with brentq on M(q)/q - 1 in log q (no spurious root at 0,
    # relative accuracy for tiny q*), because plain iteration crawls near σ_w² = 1.
    if sb == 0 and sw <= 1:
        return 0.0
    f = lambda t: q_map(math.exp(t), sw, sb, activation) / math.exp(t) - 1.0
    # M(q) ≤ σ_w² + σ_b² since tanh² < 1, so q* lies below that; at q = 1e-30 the ratio is ≫ 1 with
    # bias and ≈ σ_w² > 1 without.
    lo, hi = math.log(1e-30), math.log(sw + sb)
    if f(hi) >= 0:  # σ_b² ≫ σ_w²: M(q)/q rounds to 1 at the bound, so q* is that bound to float precision
        return q_map(sw + sb, sw, sb, activation)
    return math.exp(_brentq(f, lo, hi, xtol=1e-15))


def _c_star(sw, sb, activation, q, chi1):
    # c = 1 is always a fixed point and its slope is χ₁. Ordered (χ₁ ≤ 1): it is stable and, for tanh
    # and relu, it attracts every c in (-1, 1), so c* = 1. Relu with q* = ∞ has no stationary q at
    # all; the bias then washes out and c ↦ 2·∫relu·relu/q drives c to 1 as well.
    if chi1 <= 1 + _CRIT_TOL or q == math.inf:
        return 1.0
    # Chaotic: c = 1 is unstable and the iteration from c = 0.5 settles on the one root of
    # h(c) = c_map(c) - c in [0, 1), with h > 0 below it and h < 0 above it. (h(0) ≥ 0 because
    # c_map(0) = [σ_w² (∫Dz φ)² + σ_b²]/q*.) Iterating converges at rate χ_c → 1 near criticality,
    # so instead bracket the root by walking c up to 1 - 1e-12 and finish with brentq.
    h = lambda c: _c_map(c, sw, q, activation) - c
    lo = 0.0
    if h(lo) <= 0:  # only by rounding: odd φ without bias has c* = 0 exactly
        return 0.0
    for hi in (0.5, 0.9, 0.99, 0.999, 1 - 1e-4, 1 - 1e-6, 1 - 1e-8, 1 - 1e-10, 1 - 1e-12):
        if h(hi) < 0:
            return _brentq(h, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps)
        lo = hi
    return 1.0  # within 1e-12 of 1: numerically at criticality


@lru_cache(maxsize=8192)
def _solve(sw, sb, activation):
    """(q*, χ₁, c*, χ_c) for validated float inputs; cached since every public function needs them."""
    _, dphi = _act(activation)
    q = _q_star(sw, sb, activation)
    if activation == "tanh" and q > Q_MAX:
        raise UserError(f"mean-field theory: q* = {q:.3g} at sigma_w2={sw:g}, sigma_b2={sb:g} is past {Q_MAX:g}, where "
                        f"the quadrature is no longer accurate; use sigma_w2 + sigma_b2 below about 12")
    qe = _q_eval(q, activation)
    chi1 = float(sw * (_W1 @ dphi(math.sqrt(qe) * _Z1) ** 2))
    c = _c_star(sw, sb, activation, q, chi1)
    if c == 1.0:
        chic = chi1  # u₂ = u₁: the 2D sum is the 1D one
    else:
        # χ_c = dc'/dc at c*: ∂/∂C of ∫φ(u₁)φ(u₂) over the covariance C = q c is ∫φ'(u₁)φ'(u₂).
        u1, u2 = _u(c, qe)
        chic = float(sw * (_W2 @ (dphi(u1) * dphi(u2))))
    return q, chi1, c, chic


def q_star(sigma_w2, sigma_b2, activation="tanh"):
    """Fixed point of the variance map; math.inf for relu with σ_w² ≥ 2 (except exactly (2, 0), where
    q* = 1 is chosen since relu is scale-free there); 0 without bias in the ordered phase."""
    return _solve(*_check(sigma_w2, sigma_b2, activation))[0]


def chi_1(sigma_w2, sigma_b2, activation="tanh"):
    """χ₁ = σ_w² ∫Dz φ'(√q* z)²: slope of the correlation map at c = 1 (and per-layer gradient gain)."""
    return _solve(*_check(sigma_w2, sigma_b2, activation))[1]


def c_star(sigma_w2, sigma_b2, activation="tanh"):
    """Stable fixed point of the correlation map: 1 in the ordered phase, < 1 in the chaotic phase."""
    return _solve(*_check(sigma_w2, sigma_b2, activation))[2]


def chi_c(sigma_w2, sigma_b2, activation="tanh"):
    """χ_c = σ_w² ∫Dz₁Dz₂ φ'(u₁*)φ'(u₂*) at c*; equals χ₁ when c* = 1."""
    return _solve(*_check(sigma_w2, sigma_b2, activation))[3]


def xi_c(sigma_w2, sigma_b2, activation="tanh"):
    """Correlation depth scale ξ_c = -1/ln χ_c, with χ_c taken at the stable c*.

    Ordered phase: c* = 1 and χ_c = χ₁ < 1. Chaotic phase: c* < 1 and χ_c < 1 (slope of a stable fixed
    point), so ξ_c is finite on both sides and diverges as χ₁ → 1. Returns math.inf at criticality
    (|χ_c - 1| < 1e-10). The one case with χ_c > 1 is relu with σ_w² > 2, where q* = ∞ and there is
    no fixed point; we return 1/ln χ₁ there, the depth scale of gradient explosion (Schoenholz's |ξ_∇|).
    """
    chic = chi_c(sigma_w2, sigma_b2, activation)
    if abs(chic - 1.0) < _CRIT_TOL:
        return math.inf
    return 1.0 / abs(math.log(chic))  # = -1/ln χ_c whenever χ_c < 1


def critical_sigma_w2(sigma_b2, activation="tanh"):
    """σ_w² on the critical line χ₁ = 1 for this σ_b² (relu: 2 for every σ_b², since χ₁ = σ_w²/2)."""
    _check(1.0, sigma_b2, activation)
    f = lambda sw: chi_1(sw, sigma_b2, activation) - 1.0
    # χ₁ ≤ σ_w² max φ'² = σ_w² < 1 at the low end; χ₁ grows with σ_w², so widen the top until it is > 1.
    lo, hi, top = 1e-3, 4.0, 1e4
    if activation == "tanh":  # the σ_w² where q* reaches Q_MAX (from the q map's fixed point): the theory's edge
        sb = float(sigma_b2)
        top = (Q_MAX - sb) / (_W1 @ np.tanh(math.sqrt(Q_MAX) * _Z1) ** 2) * (1 - 1e-9) if sb < Q_MAX else 0.0
        if top <= lo or f(top) < 0:
            raise UserError(f"no critical sigma_w2 for sigma_b2={sigma_b2} where the mean-field quadrature is "
                            f"accurate (q* <= {Q_MAX:g}); use a smaller sigma_b2")
    hi = min(hi, top)
    while f(hi) < 0:
        if hi >= top:
            raise UserError(f"no critical sigma_w2 below {top:g} for sigma_b2={sigma_b2}")
        lo, hi = hi, min(2 * hi, top)
    # maxiter: at σ_b² = 0 the root sits where q* leaves 0 and χ₁ has a kink; bisection steps get there.
    return _brentq(f, lo, hi, xtol=1e-12, maxiter=500)


def trainable_depth(sigma_w2, sigma_b2, activation="tanh", factor=6.0):
    """Empirical trainable depth factor·ξ_c; scalar in -> float, array-like in -> ndarray (broadcast)."""
    sw, sb = np.broadcast_arrays(np.asarray(sigma_w2, float), np.asarray(sigma_b2, float))
    out = np.array([factor * xi_c(a, b, activation) for a, b in zip(sw.ravel(), sb.ravel())]).reshape(sw.shape)
    return float(out) if out.ndim == 0 else out


def mean_field(sigma_w2, sigma_b2, activation="tanh"):
    """All fixed-point quantities: q_star, chi_1, c_star, chi_c, xi_c and phase (from χ₁)."""
    q, chi1, c, chic = _solve(*_check(sigma_w2, sigma_b2, activation))
    phase = "critical" if abs(chi1 - 1.0) < _CRIT_TOL else ("ordered" if chi1 < 1 else "chaotic")
    return dict(q_star=q, chi_1=chi1, c_star=c, chi_c=chic, xi_c=xi_c(sigma_w2, sigma_b2, activation), phase=phase)
