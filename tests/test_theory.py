"""Mean-field theory (reconent.science.theory) against known values, closed forms and its own fixed-point equations."""

import math
import warnings

import numpy as np
import pytest
from scipy.integrate import quad

from reconent.errors import UserError
from reconent.science import theory as T


def gauss(f):  # independent ∫Dz f(z) by adaptive quadrature, to check the Gauss-Hermite sums
    return quad(lambda z: f(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -12, 12, limit=200, epsabs=1e-13)[0]


def test_tanh_critical_line_known_values():
    assert abs(T.critical_sigma_w2(0.05) - 1.76) < 0.01  # Schoenholz et al. 2017
    assert abs(T.chi_1(T.critical_sigma_w2(0.05), 0.05) - 1) < 1e-9
    assert abs(T.critical_sigma_w2(0.0) - 1) < 1e-6  # tanh'(0) = 1
    # σ_b² → 0: critical σ_w² → 1 from above. Expanding the q map, q* ∝ σ_b^{2/3} at criticality and
    # σ_w² - 1 ≈ 2q*, so each factor 1000 in σ_b² moves the critical point 10x closer to 1.
    crit = [T.critical_sigma_w2(sb) for sb in (1e-3, 1e-6, 1e-9, 1e-12)]
    assert crit[0] > crit[1] > crit[2] > crit[3] > 1
    assert abs(crit[1] - 1) < 0.02 and abs(crit[2] - 1) < 0.002
    for a, b in zip(crit, crit[1:]):
        assert (a - 1) / (b - 1) == pytest.approx(10, rel=0.05)


def test_relu_closed_forms_and_critical_point():
    assert abs(T.chi_1(2, 0, "relu") - 1) < 1e-6
    assert abs(T.critical_sigma_w2(0, "relu") - 2) < 1e-6
    assert T.q_star(2, 0, "relu") == 1.0  # scale-free: every q is fixed, 1 is the documented choice
    assert T.xi_c(2, 0, "relu") == math.inf and T.mean_field(2, 0, "relu")["phase"] == "critical"
    assert T.q_star(2.0, 0.1, "relu") == math.inf and T.q_star(3.0, 0.1, "relu") == math.inf
    for sw, sb in [(1.0, 0.1), (1.5, 0.5), (1.9, 0.0)]:  # ordered: q* = σ_b²/(1 - σ_w²/2), χ₁ = σ_w²/2
        assert T.q_star(sw, sb, "relu") == pytest.approx(sb / (1 - sw / 2), abs=1e-15)
        assert T.chi_1(sw, sb, "relu") == pytest.approx(sw / 2, rel=1e-12)
        assert T.c_star(sw, sb, "relu") == 1.0
        assert T.xi_c(sw, sb, "relu") == pytest.approx(-1 / math.log(sw / 2), rel=1e-10)
    # beyond σ_w² = 2 the signal explodes: finite gradient-explosion depth 1/ln(σ_w²/2), diverging at 2
    assert T.xi_c(3.0, 0.0, "relu") == pytest.approx(1 / math.log(1.5))
    assert T.xi_c(2.01, 0.0, "relu") > T.xi_c(2.1, 0.0, "relu") > T.xi_c(3.0, 0.0, "relu")


def test_relu_c_map_matches_arc_cosine_kernel():
    # ∫relu(u₁)relu(u₂) = q (√(1-c²) + (π - arccos c) c) / 2π (Cho & Saul), and σ_b²/q* = 1 - σ_w²/2.
    for sw, sb in [(1.0, 0.1), (1.5, 0.5), (1.9, 0.0)]:
        for c in np.linspace(-0.99, 0.99, 12):
            k = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / (2 * math.pi)
            assert T.c_map(c, sw, sb, "relu") == pytest.approx(sw * k + 1 - sw / 2, abs=5e-3)


@pytest.mark.parametrize("act,sw,sb", [("tanh", 0.5, 0.05), ("tanh", 1.76, 0.05), ("tanh", 4.0, 1.0),
                                       ("tanh", 3.0, 0.0), ("relu", 1.5, 0.2)])
def test_q_star_is_the_fixed_point_reached_from_q_1(act, sw, sb):
    q = T.q_star(sw, sb, act)
    assert q > 0 and T.q_map(q, sw, sb, act) == pytest.approx(q, rel=1e-12)
    x = 1.0
    for _ in range(3000):
        x = T.q_map(x, sw, sb, act)
    assert x == pytest.approx(q, rel=1e-8)


def test_tanh_without_bias_ordered_has_q_star_zero():
    assert T.q_star(0.8, 0.0) == 0.0 and T.chi_1(0.8, 0.0) == pytest.approx(0.8)  # χ₁ = σ_w² tanh'(0)²


def test_gauss_hermite_matches_adaptive_integration():
    sw, sb = 1.76, 0.05
    q = T.q_star(sw, sb)
    assert sw * gauss(lambda z: math.tanh(math.sqrt(q) * z) ** 2) + sb == pytest.approx(q, rel=1e-9)
    assert T.chi_1(sw, sb) == pytest.approx(sw * gauss(lambda z: (1 - math.tanh(math.sqrt(q) * z) ** 2) ** 2), rel=1e-9)
    # c = 0: u₁, u₂ independent and ∫tanh = 0, so c' = σ_b²/q* exactly
    assert T.c_map(0.0, 2.5, 0.05) == pytest.approx(0.05 / T.q_star(2.5, 0.05), rel=1e-8)


def test_c_star_ordered_and_chaotic_is_where_iteration_from_half_goes():
    assert abs(T.c_star(1.0, 0.05) - 1) < 1e-6
    c = T.c_star(3.0, 0.05)
    assert 0 < c < 0.99
    assert T.c_map(c, 3.0, 0.05) == pytest.approx(c, abs=1e-12)
    for sw in (1.0, 3.0):
        x = 0.5
        for _ in range(500):
            x = T.c_map(x, sw, 0.05)
        assert x == pytest.approx(T.c_star(sw, 0.05), abs=1e-6)
    assert abs(T.c_star(2.0, 0.0)) < 1e-9  # odd φ without bias: chaotic inputs fully decorrelate


def test_chi_c_is_the_slope_of_the_c_map_at_its_fixed_point():
    assert T.chi_c(1.0, 0.05) == T.chi_1(1.0, 0.05)  # c* = 1
    for sw, sb in [(1.8, 0.05), (2.5, 0.05), (3.0, 0.3)]:
        c, h = T.c_star(sw, sb), 1e-5
        slope = (T.c_map(c + h, sw, sb) - T.c_map(c - h, sw, sb)) / (2 * h)
        assert T.chi_c(sw, sb) == pytest.approx(slope, rel=1e-6)
        assert T.chi_c(sw, sb) < 1 < T.chi_1(sw, sb)  # stable c* < 1 although c = 1 is unstable


def test_xi_c_diverges_at_criticality_from_both_sides_and_is_finite_away():
    for sb in (0.05, 1.0):
        sc = T.critical_sigma_w2(sb)
        for side in (-1, 1):
            xs = [T.xi_c(sc + side * d, sb) for d in (1e-1, 1e-2, 1e-3, 1e-4)]
            assert np.all(np.isfinite(xs)) and np.all(np.diff(xs) > 0) and xs[-1] > 1e4
            assert 5 < xs[-1] / xs[-2] < 20  # ξ_c ∝ 1/|σ_w² - σ_w²*|: no cap from quadrature error
    for sw in (0.5, 1.0, 3.0, 10.0):
        m = T.mean_field(sw, 0.05)
        assert 0 < m["xi_c"] < 100 and m["xi_c"] == pytest.approx(-1 / math.log(m["chi_c"]))


def test_mean_field_dict_and_phases():
    m = T.mean_field(3.0, 0.05)
    assert set(m) == {"q_star", "chi_1", "c_star", "chi_c", "xi_c", "phase"}
    assert (m["q_star"], m["chi_1"], m["c_star"], m["chi_c"], m["xi_c"]) == (
        T.q_star(3.0, 0.05), T.chi_1(3.0, 0.05), T.c_star(3.0, 0.05), T.chi_c(3.0, 0.05), T.xi_c(3.0, 0.05))
    assert m["phase"] == "chaotic" and T.mean_field(1.0, 0.05)["phase"] == "ordered"
    assert T.mean_field(T.critical_sigma_w2(0.05), 0.05)["phase"] == "critical"


def test_trainable_depth_scalar_and_array():
    d = T.trainable_depth(1.0, 0.05)
    assert isinstance(d, float) and d == pytest.approx(6 * T.xi_c(1.0, 0.05))
    sw = [1.0, 3.0, 5.0]
    arr = T.trainable_depth(sw, 0.05, factor=2.0)
    assert isinstance(arr, np.ndarray) and arr.shape == (3,)
    np.testing.assert_allclose(arr, [2 * T.xi_c(s, 0.05) for s in sw])
    assert T.trainable_depth(np.ones((2, 2)), [0.05, 0.5]).shape == (2, 2)


def test_bad_inputs_raise():
    for f in (T.q_star, T.chi_1, T.c_star, T.chi_c, T.xi_c, T.mean_field, T.trainable_depth):
        with pytest.raises(ValueError, match="'tanh', 'relu'"):
            f(1.0, 0.05, activation="gelu")
    with pytest.raises(ValueError, match="'tanh', 'relu'"):
        T.critical_sigma_w2(0.05, activation="sigmoid")
    with pytest.raises(ValueError):
        T.q_star(-1.0, 0.05)
    with pytest.raises(ValueError):
        T.q_star(1.0, -0.05)


def test_robust_over_the_sweep_range():
    T._solve.cache_clear()  # real solves, not cache hits
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid-value warnings anywhere in the range
        for act in ("tanh", "relu"):
            for sw in np.linspace(0.05, 10, 25):
                for sb in (0.0, 1e-6, 0.05, 0.5, 1.0):
                    m = T.mean_field(sw, sb, act)
                    assert m["phase"] == ("ordered" if m["chi_1"] < 1 else "chaotic")
                    assert m["q_star"] >= 0 and m["chi_1"] > 0 and 0 <= m["c_star"] <= 1
                    assert 0 < m["xi_c"] < math.inf
                    if act == "tanh":
                        assert math.isfinite(m["q_star"]) and m["chi_c"] < 1
                        assert (m["c_star"] == 1) == (m["phase"] == "ordered")


def test_past_q_max_the_theory_refuses_instead_of_answering_wrongly():
    # Inside the accepted range the 100-node sums still agree with adaptive quadrature to 1.6%; a few units of q
    # further they do not (5% at q = 13), which is why Q_MAX exists.
    sb = 0.05
    edge = T.Q_MAX - 0.01
    sw = (edge - sb) / gauss(lambda z: math.tanh(math.sqrt(edge) * z) ** 2)  # the σ_w² where q* ≈ edge
    q = T.q_star(sw, sb)
    assert q == pytest.approx(edge, rel=1e-3)
    exact = sw * gauss(lambda z: (1 - math.tanh(math.sqrt(q) * z) ** 2) ** 2)
    assert T.chi_1(sw, sb) == pytest.approx(exact, rel=0.016)
    for bad_sw, bad_sb in ((20.0, 0.05), (4.0, 100.0), (4.0, 1e9)):
        with pytest.raises(UserError, match="q\\* = .* is past 9"):
            T.mean_field(bad_sw, bad_sb)


def test_critical_line_stays_inside_the_theory_range_and_refuses_beyond_it():
    # σ_b² = 3: χ₁ = 1 at σ_w² ≈ 4.91, q* ≈ 6.4; the search for it must not step past the edge (σ_w² = 9 is).
    sw = T.critical_sigma_w2(3.0)
    assert T.chi_1(sw, 3.0) == pytest.approx(1.0, abs=1e-9)
    assert T.q_star(sw, 3.0) < T.Q_MAX
    with pytest.raises(UserError):
        T.q_star(9.0, 3.0)
    for sb in (7.0, 1e9):  # the critical point would need q* > Q_MAX: a UserError (exit 2), not scipy's ValueError
        with pytest.raises(UserError, match="no critical sigma_w2 .* use a smaller sigma_b2"):
            T.critical_sigma_w2(sb)
    assert T.critical_sigma_w2(100.0, "relu") == 2.0  # relu's closed form has no quadrature edge
