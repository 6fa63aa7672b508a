"""reconent.analysis on synthetic frames in the documented row schema (no Ray, no training)."""
import functools
import math

import numpy as np
import pandas as pd
import pytest

from reconent.analysis import (AnalysisError, analyse, boundary_table, confusion, match, metrics,
                               predicted_boundary, probe_cutoffs, score, train_verdicts, true_boundary)
from reconent.analysis import synthetic as syn
from reconent.analysis.agreement import scored
from reconent.science.entropy import cutoff_from_normalised

BOUNDARY = {1.0: 3, 1.5: 8, 1.76: 20, 2.5: 6}
DEPTHS = [2, 4, 6, 10, 15, 25]


def test_synthetic_profile_has_the_cutoff_it_was_built_for():
    for c in (0, 1, 7, 28):
        assert cutoff_from_normalised(syn.profile(30, c), 0.005) == c


def test_synthetic_rows_carry_their_budget_in_the_schema_3_columns():
    from reconent.sweep.columns import SCHEMAS

    r = syn.probe_row(1.0, 30, 12, checkpoints={58: 4, 234: 10})
    assert (r["steps"], r["epochs"], r["steps_run"]) == (938, None, 938) and "checkpoints" in r
    assert r["checkpoint_steps"] == [58, 234, 938] and r["checkpoints"] == "58,234,938"
    assert [cutoff_from_normalised(v, 0.005) for v in r["checkpoint_norm_median"]] == [4, 10, 12]
    assert r["checkpoint_norm_median"][-1] == r["relative_entropy_norm_median"]
    old = syn.probe_row(1.0, 30, 12, steps=None, epochs=1)  # the budget given as one pass over mnist5k
    assert (old["steps"], old["epochs"], old["steps_run"], old["checkpoint_steps"]) == (None, 1, 63, None)
    assert old["point_id"] != r["point_id"]  # another budget is another point
    t = syn.train_row(1.0, 4, curve=[0.2, 0.5, 0.85, 0.9], epochs=10)
    assert t["accuracy"] == [0.2, 0.5, 0.85] and t["epochs_run"] == 3 and t["epochs"] == 10
    for kind, row in (("probe", r), ("probe", old), ("train", t)):
        assert set(row) <= set(SCHEMAS[kind].names), set(row) - set(SCHEMAS[kind].names)


@pytest.mark.parametrize("seeds", [(0,), (0, 1, 2)])
def test_boundaries_recovered_from_a_known_grid(seeds):
    p, t = syn.grid(BOUNDARY, 30, DEPTHS, seeds=seeds)
    a = analyse(p, t, n_boot=50)
    b = a.boundaries.set_index("sigma_w2")
    assert b["pred_lo"].to_dict() == {w: float(c) for w, c in BOUNDARY.items()}
    assert (b["pred_hi"] == b["pred_lo"]).all() and not b["censored_pred"].any()
    # the truth is bracketed by the trained grid: last trainable depth .. first untrainable - 1
    for w, c in BOUNDARY.items():
        lo = max([d for d in DEPTHS if d <= c], default=0)
        hi = min(d for d in DEPTHS if d > c) - 1
        assert (b.loc[w, "true_lo"], b.loc[w, "true_hi"]) == (lo, hi)
    s = a.scores
    assert s["n_scored"] == len(t) and s["fp"] == s["fn"] == 0
    assert s["tp"] == sum(d <= c for c in BOUNDARY.values() for d in DEPTHS) * len(seeds)
    assert s["f1"] == s["balanced_accuracy"] == 1.0 and s["boundary_distance_depth"] == 0.0
    if len(seeds) > 1:
        assert a.intervals["f1"] == (1.0, 1.0) and (b["ci_lo"] == b["pred_lo"]).all()
    else:
        assert a.intervals == {} and b["ci_lo"].isna().all()
    assert a.notes == []


def test_confusion_and_metrics_by_hand():
    c = confusion([True, True, False, False, True], [True, False, False, True, True])
    assert c == dict(tp=2, fp=1, fn=1, tn=1)
    m = metrics(c)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    one_class = metrics(confusion([True, False], [True, True]))
    assert one_class["recall"] == 0.5 and one_class["precision"] == 1.0 and math.isnan(one_class["balanced_accuracy"])


def test_overconfident_prediction_scored_exactly():
    # probe says L* = 10, training says 6: depths 8 and 10 are false positives, 12 a true negative
    p = pd.DataFrame([syn.probe_row(1.2, 20, 10)])
    t = pd.DataFrame([syn.train_row(1.2, d, 0.9 if d <= 6 else 0.2) for d in (2, 4, 6, 8, 10, 12)])
    a = analyse(p, t)
    assert {k: a.scores[k] for k in ("tp", "fp", "fn", "tn")} == dict(tp=3, fp=2, fn=0, tn=1)
    assert a.scores["precision"] == pytest.approx(3 / 5) and a.scores["recall"] == 1.0
    assert a.scores["balanced_accuracy"] == pytest.approx((1 + 1 / 3) / 2)
    # the truth lies in [6, 7]: the prediction 10 is 3 layers and ln(10/7) in log-depth away
    assert a.scores["boundary_distance_depth"] == 3.0
    assert a.scores["boundary_distance_log_depth"] == pytest.approx(math.log(10 / 7))


def test_numpy_scorer_equals_the_pandas_tables():
    rng = np.random.default_rng(1)
    probes, trains = [], []
    for w in (0.8, 1.2, 1.76, 2.4):
        for s in (0, 1, 2, 3):  # seed 3 has training but no probe: predicted from the median
            if s < 3:
                probes.append(syn.probe_row(w, 24, int(rng.integers(2, 22)), seed=s))
            for d in (2, 5, 9, 14, 20, 30):
                trains.append(syn.train_row(w, d, 0.9 if rng.random() < 0.6 else 0.3, seed=s))
    p, t = probe_cutoffs(pd.DataFrame(probes)), train_verdicts(pd.DataFrame(trains))
    m = scored(match(p, t))
    s = score(p, t)
    assert (m["pred_source"] == "median").sum() > 0
    c = confusion(m["predicted"].astype(bool), m["trainable"].astype(bool))
    assert {k: s[k] for k in c} == c and s["n_scored"] == len(m)
    b = boundary_table(p, t, n_boot=0).dropna(subset=["pred_lo", "true_lo"])
    assert s["boundary_distance_depth"] == pytest.approx(b["distance_depth"].mean())
    assert s["boundary_distance_log_depth"] == pytest.approx(b["distance_log_depth"].mean())


def test_median_cutoff_and_bootstrap_interval_over_seeds():
    p = probe_cutoffs(pd.DataFrame([syn.probe_row(1.5, 30, c, seed=s) for s, c in enumerate((4, 8, 9, 10, 20))]))
    b = predicted_boundary(p, n_boot=500).iloc[0]
    assert b["pred_lo"] == 9 and b["n_seeds"] == 5
    assert 4 <= b["ci_lo"] <= 9 <= b["ci_hi"] <= 20 and b["ci_lo"] < b["ci_hi"]


def _gauss(f):  # ∫Dz f(z) by adaptive quadrature
    from scipy.integrate import quad

    return quad(lambda z: f(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -12, 12, limit=200, epsabs=1e-13)[0]


@functools.lru_cache(maxsize=None)
def _mean_field_tanh(sw: float, sb: float) -> tuple[float, float]:
    """(χ_1, χ_c) of a wide tanh network computed here from scratch (Poole et al. 2016, Schoenholz et al.
    2017), not through reconent.science.theory: q* by iterating the variance map with scipy quadrature,
    the chaotic phase's c* by root-finding the correlation map on a dense 2-D grid."""
    from scipy.optimize import brentq

    q = 1.0
    for _ in range(5000):
        q, q_old = sw * _gauss(lambda z: math.tanh(math.sqrt(q) * z) ** 2) + sb, q
        if abs(q - q_old) < 1e-14:
            break
    chi1 = sw * _gauss(lambda z: math.cosh(math.sqrt(q) * z) ** -4)
    if chi1 <= 1:  # ordered: c* = 1 and the correlation map's slope there is χ_1
        return chi1, chi1
    z = np.linspace(-10, 10, 1601)
    wz = np.exp(-z * z / 2) / math.sqrt(2 * math.pi) * (z[1] - z[0])
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    w2, u1 = np.outer(wz, wz), math.sqrt(q) * z1
    u2 = lambda c: math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)  # noqa: E731
    c = brentq(lambda c: (sw * np.sum(w2 * np.tanh(u1) * np.tanh(u2(c))) + sb) / q - c, 0.0, 1 - 1e-9, xtol=1e-13)
    return chi1, sw * float(np.sum(w2 / np.cosh(u1) ** 2 / np.cosh(u2(c)) ** 2))


def test_theory_overlay_matches_an_independent_mean_field():
    """The analysis's theory columns against the physics computed in this test: theory_depth = 6·ξ_c with
    ξ_c = −1/ln χ_c, and the critical σ_w² where χ_1 = 1 (≈ 1.7610 at σ_b² = 0.05, Schoenholz et al. 2017)."""
    from scipy.optimize import brentq

    p, t = syn.grid({0.9: 3, 1.76: 20, 3.0: 5}, 30, DEPTHS)
    cnn = pd.DataFrame([syn.probe_row(w, 10, 4, arch="cnn", width=None, channels=128, sigma_b2=2e-5, rtol=0.01)
                        for w in (0.5, 1.0, 2.0)])
    a = analyse(pd.concat([p, cnn], ignore_index=True), t)
    b = a.boundaries
    assert sorted(zip(b["arch"], b["sigma_w2"])) == [("cnn", 0.5), ("cnn", 1.0), ("cnn", 2.0),
                                                     ("mlp", 0.9), ("mlp", 1.76), ("mlp", 3.0)]
    for r in b.itertuples():
        assert r.activation == "tanh"
        chi_c = _mean_field_tanh(r.sigma_w2, r.sigma_b2)[1]
        assert r.theory_depth == pytest.approx(-6 / math.log(chi_c), rel=1e-6), (r.arch, r.sigma_w2)
    crit = {sb: brentq(lambda sw: _mean_field_tanh(sw, sb)[0] - 1, 1 + 1e-9, 3.0, xtol=1e-12) for sb in (0.05, 2e-5)}
    assert crit[0.05] == pytest.approx(1.7610, abs=2e-4)  # the literature's tanh critical point
    assert 1.0 < crit[2e-5] < 1.1  # σ_b² → 0: the critical point approaches 1
    for r in b.itertuples():
        assert r.critical_sigma_w2 == pytest.approx(crit[r.sigma_b2], rel=1e-8)
    # near the critical line the trainable depth diverges; away from it, it is tens of layers
    depth = dict(zip(zip(b["arch"], b["sigma_w2"]), b["theory_depth"]))
    assert depth[("mlp", 1.76)] > 1e4 and 10 < depth[("mlp", 0.9)] < 30 and 30 < depth[("mlp", 3.0)] < 100
    assert sorted(a.summary()["critical_sigma_w2"]) == pytest.approx(sorted(crit.values()), rel=1e-8)


def test_conv_stem_layers_are_not_counted_as_depth():
    p = pd.DataFrame([syn.probe_row(1.0, 10, 4, arch="cnn", width=None, channels=128, sigma_b2=2e-5),
                      syn.probe_row(2.0, 10, 9, arch="cnn", width=None, channels=128, sigma_b2=2e-5)])
    assert len(p["relative_entropy_norm_median"].iloc[0]) == 13  # depth + 3 stem layers
    c = probe_cutoffs(p)
    assert list(c["cutoff_layer"]) == [7, 12] and list(c["cutoff"]) == [4, 9]
    assert list(c["censored"]) == [False, True]  # cutoff at the last-but-one probe layer: no plateau seen


def test_rederiving_rtol_moves_the_cutoff_without_rerun():
    p = pd.DataFrame([syn.probe_row(1.5, 30, 8)])  # plateau drifts by up to 0.003
    assert probe_cutoffs(p)["cutoff"].iloc[0] == 8  # stored rtol 0.005
    loose, tight = probe_cutoffs(p, rtol=0.1)["cutoff"].iloc[0], probe_cutoffs(p, rtol=0.001)["cutoff"].iloc[0]
    assert tight == cutoff_from_normalised(syn.profile(30, 8), 0.001) and tight > 8
    assert loose == cutoff_from_normalised(syn.profile(30, 8), 0.1) and loose < 8
    t = pd.DataFrame([syn.train_row(1.5, d, 0.9 if d <= 8 else 0.2) for d in (5, 10, 14, 25)])
    a, b = analyse(p, t), analyse(p, t, rtol=0.001)
    assert a.scores["fp"] == 0 and b.scores["fp"] > 0  # same rows, other rule, other verdicts


def _t(acc, status="ok", epochs=5, threshold=0.8):
    r = syn.train_row(1.0, 4, 0.5, epochs=epochs, threshold=threshold)
    return dict(r, accuracy=acc, epochs_run=len(acc), status=status, final_accuracy=acc[-1])


def test_rederiving_threshold_and_censoring():
    t = pd.DataFrame([_t([0.5, 0.85]),  # stopped early at its own 0.8
                      _t([0.2, 0.3, 0.4, 0.5, 0.6]),  # ran its whole budget
                      _t([0.1], status="diverged")])
    verdict = lambda thr: list(train_verdicts(t, thr)["trainable"])  # noqa: E731
    assert verdict(None) == [True, False, False]
    assert verdict(0.55) == [True, True, False]
    v = verdict(0.9)  # the early-stopped run never saw epochs 3-5: unknown, not untrainable
    assert math.isnan(v[0]) and v[1:] == [False, False]
    notes = []
    train_verdicts(t, 0.9, notes)
    assert any("censored" in n for n in notes)


def test_probe_without_plateau_is_censored_and_deeper_trials_unscored():
    p = pd.DataFrame([syn.probe_row(1.76, 10, 9)])  # still rising at its last layer
    t = pd.DataFrame([syn.train_row(1.76, d, 0.9) for d in (5, 10, 20)])
    a = analyse(p, t)
    b = a.boundaries.iloc[0]
    assert b["censored_pred"] and b["pred_lo"] == 10 and np.isinf(b["pred_hi"])
    assert list(match(a.probes, a.trains)["predicted"].iloc[:2]) == [True, True]
    assert a.scores["n_scored"] == 2 and any("probe deeper" in n for n in a.notes)


@pytest.mark.parametrize("case, needle", [
    ("no_train", "no training results"), ("single", "single σ_w²"), ("all_ok", "every training trial"),
    ("all_bad", "no training trial reached"), ("no_probe", "no usable probe")])
def test_edge_cases_give_clear_notes(case, needle):
    p, t = syn.grid({1.0: 5, 2.0: 8}, 20, [2, 4, 12])
    if case == "no_train":
        t = None
    elif case == "single":
        p, t = p[p["sigma_w2"] == 1.0], t[t["sigma_w2"] == 1.0]
    elif case == "all_ok":
        t = t.assign(accuracy=[[0.95]] * len(t), epochs_run=1)
    elif case == "all_bad":
        t = t.assign(accuracy=[[0.1] * 5] * len(t), epochs_run=5)
    elif case == "no_probe":
        p = None
    a = analyse(p, t, n_boot=20)
    assert any(needle in n for n in a.notes), a.notes
    s = a.summary()  # always JSON-ready, never a traceback
    assert s["notes"] == a.notes and set(s) >= {"precision", "saving_factor", "critical_sigma_w2"}


def test_missing_columns_name_the_schema_version():
    p, t = syn.grid({1.0: 5}, 20, [2])
    with pytest.raises(AnalysisError, match=r"relative_entropy_norm_median.*schema version >= 1.*found schema version 0"):
        analyse(p.drop(columns=["relative_entropy_norm_median"]).assign(schema_version=0), t)
    with pytest.raises(AnalysisError, match="accuracy"):
        analyse(p, t.drop(columns=["accuracy"]))
    a = analyse(p, t.drop(columns=["seconds"]))  # optional column: a note, not an error
    assert any("seconds" in n for n in a.notes)
    with pytest.raises(AnalysisError, match="no probe and no training"):
        analyse(None, None)


def test_true_boundary_stops_at_the_first_failure():
    t = train_verdicts(pd.DataFrame([syn.train_row(1.0, d, pk) for d, pk in
                                     ((2, 0.9), (4, 0.9), (6, 0.2), (8, 0.9), (10, 0.2))]))
    b = true_boundary(t).iloc[0]
    assert (b["true_lo"], b["true_hi"], b["n_violations"]) == (4.0, 5.0, 1)
    first_fails = true_boundary(train_verdicts(pd.DataFrame([syn.train_row(1.0, 3, 0.2)]))).iloc[0]
    assert (first_fails["true_lo"], first_fails["true_hi"]) == (0.0, 2.0)


def test_cost_counts_the_probes_read_and_the_trials_scored():
    p = pd.DataFrame([syn.probe_row(1.0, 20, 5, seconds=3.0), syn.probe_row(1.0, 10, 5, seconds=1.0),
                      syn.probe_row(2.0, 20, 8, seconds=4.0)])  # the depth-10 probe is redundant
    t = pd.DataFrame([syn.train_row(1.0, d, 0.2, stop_early=False, seconds=50.0) for d in (4, 8)])
    c = analyse(p, t).cost.set_index("scope")
    assert c.loc["points both cover", "probe_seconds"] == 3.0 and c.loc["points both cover", "train_seconds"] == 100.0
    assert c.loc["points both cover", "saving_factor"] == pytest.approx(100 / 3)
    assert c.loc["whole grid", "probe_seconds"] == 8.0
    assert c.loc["whole grid, deepest probes only", "probe_seconds"] == 7.0


def test_load_concatenates_several_sweeps(tmp_path):
    from reconent.analysis import load

    for name, w in (("a", 1.0), ("b", 2.0)):
        p, t = syn.grid({w: 5}, 10, [2], sweep=name)
        for kind, df in (("probe", p), ("train", t)):
            (tmp_path / name / kind).mkdir(parents=True)
            df.to_parquet(tmp_path / name / kind / f"part-{df['point_id'].iloc[0]}.parquet")
    both = load([str(tmp_path / "a"), str(tmp_path / "b")], "probe")
    assert sorted(both["sweep"]) == ["a", "b"] and sorted(both["sigma_w2"]) == [1.0, 2.0]


def test_the_theory_curve_is_blank_only_where_the_theory_has_no_value():
    """A figure's σ_w² axis may start at 0, where the mean field is undefined: only that point is NaN."""
    from reconent.analysis.boundary import theory_depth

    d = theory_depth(np.array([0.0, 0.5]), 0.05, "tanh", arch="mlp")
    assert np.isnan(d[0]) and d[1] == pytest.approx(7.148, abs=1e-3)  # 6·ξ_c at 0.5 (analysis/README.md: 7.1)
