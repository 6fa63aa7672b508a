"""Verdicts decided early: a run the stop rule ended is untrainable by prediction, marked wherever verdicts appear."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reconent.analysis import analyse, train_verdicts, true_boundary_by_epochs
from reconent.analysis import synthetic as syn
from reconent.analysis.report import boundary_display

FLAT = [0.1] * 25  # stopped after a quarter of a 100-epoch budget


def _rows():
    """σ_w² 1: depth 5 passes at epoch 3, depth 10 was stopped early at epoch 25, depth 15 ran its 100 epochs flat.
    σ_w² 2: depth 5 passes, depth 10 ran its budget flat (observed)."""
    stopped = dict(syn.train_row(1.0, 10, curve=FLAT, epochs=100), stopped_early=True, stop_bound=0.13,
                   stop_rate=0.0)
    rows = [syn.train_row(1.0, 5, curve=[0.3, 0.6, 0.85], epochs=100), stopped,
            syn.train_row(1.0, 15, curve=[0.1] * 100, epochs=100),
            syn.train_row(2.0, 5, curve=[0.3, 0.6, 0.85], epochs=100),
            syn.train_row(2.0, 10, curve=[0.1] * 100, epochs=100)]
    return pd.DataFrame([{**r, "stopped_early": r.get("stopped_early", False)} for r in rows])


def _at(t, w, d):
    r = t[(t["sigma_w2"] == w) & (t["depth"] == d)].iloc[0]
    return r["trainable"], r["verdict_predicted"]


def test_a_stopped_run_is_untrainable_by_prediction_at_its_own_threshold_and_budget_only():
    rows, notes = _rows(), []
    t = train_verdicts(rows, notes=notes)
    assert _at(t, 1.0, 10) == (False, True)  # predicted ...
    assert _at(t, 1.0, 15) == (False, False) and _at(t, 1.0, 5) == (True, False)  # ... the others observed
    assert any("stopped early by their stop rule" in n and "predicted" in n for n in notes)
    assert _at(train_verdicts(rows, threshold=0.9), 1.0, 10) == (False, True)  # higher threshold: still implied
    v, p = _at(train_verdicts(rows, threshold=0.5), 1.0, 10)  # a lower threshold it never passed: unknown
    assert v is None or (isinstance(v, float) and math.isnan(v))
    assert not p
    v, p = _at(train_verdicts(rows, epochs=200), 1.0, 10)  # a larger budget: unknown, never untrainable
    assert (v is None or math.isnan(v)) and not p
    assert _at(train_verdicts(rows, epochs=50), 1.0, 10) == (False, True)  # a budget it did not reach: predicted
    assert _at(train_verdicts(rows, epochs=20), 1.0, 10) == (False, False)  # one it ran: observed


def test_the_true_boundary_says_which_upper_ends_are_predicted():
    rec = {(r["epochs"], r["sigma_w2"]): r for r in true_boundary_by_epochs(_rows())}
    assert rec[(100, 1.0)]["upper"] == 10 and rec[(100, 1.0)]["predicted"] is True
    assert rec[(20, 1.0)]["upper"] == 10 and rec[(20, 1.0)]["predicted"] is False  # it did run 20 epochs
    assert rec[(100, 2.0)]["upper"] == 10 and rec[(100, 2.0)]["predicted"] is False
    shown = boundary_display(analyse(None, _rows(), n_boot=0, warn=False)).set_index("σ_w²")
    assert shown.loc[1.0, "true L* (trained depths)"] == "5 … 9 (predicted)"
    assert shown.loc[2.0, "true L* (trained depths)"] == "5 … 9"


# ---------------------------------------------------------------- the offline replay (analysis/stop_rule/replay.py)
BOUNDARY = {0.5: 10, 1.0: 20, 2.0: 16}  # the last trainable depth of each σ_w² column


def _curve(depth, L, rng, epochs=100):
    e = np.arange(1, epochs + 1)
    noise = rng.normal(0, 0.004, epochs)
    if depth == L:  # at the boundary: flat at chance for 80 epochs, then a very late take-off (passes ~ epoch 91)
        return list(np.where(e <= 80, 0.1, 0.1 + 0.8 * (1 - np.exp(-(e - 80) / 5))) + noise)
    if depth < L:  # concave rises that pass later the closer they are to the boundary (epochs 3 ... ~90)
        tau = 1 + 35 * (depth / L) ** 3
        return list(0.1 + 0.85 * (1 - np.exp(-e / tau)) + noise)
    if depth <= L + 4:  # just beyond: rises, but saturates below the threshold
        return list(0.1 + 0.55 * (1 - np.exp(-e / 15)) + noise)
    return list(0.1 + noise)  # far beyond: flat at chance


def _store_curves(root):
    from reconent.sweep.store import Store

    rng, store, n = np.random.default_rng(0), Store(str(root), "budgets"), 0
    for w, L in BOUNDARY.items():
        for d in range(2, 31, 2):
            row = syn.train_row(w, d, curve=_curve(d, L, rng), epochs=100, threshold=0.8, sweep="budgets")
            store.write_part("train", row)
            n += 1
    return n


def test_replay_script_counts_flips_near_the_boundary_and_epochs_saved(tmp_path):
    """The script, run as its docstring says, on generated full-budget curves written as real Parquet parts: the only
    flips are the very late take-offs at the boundary (2 layers below the first untrainable depth: near), and the
    rule saves a quarter of every flat run's epochs and more of a plateau's."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    n = _store_curves(tmp_path / "data")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "analysis/stop_rule/replay.py"), str(tmp_path / "data"),
                          "--out", str(tmp_path / "out"), "--epochs", "100", "50"],
                         capture_output=True, text=True, cwd=root, timeout=300)
    assert out.returncode == 0, out.stderr
    s = json.loads((tmp_path / "out/summary.json").read_text())
    at100, at50 = s["budgets"]
    trainable = sum(len([d for d in range(2, 31, 2) if d <= L]) for L in BOUNDARY.values())
    assert at100["runs"] == n == 45 and at100["trainable"] == trainable and at100["untrainable"] == n - trainable
    assert at100["flips"] == 3 and at100["flips_far"] == 0 and at100["flips_max_layers_below_boundary"] == 2
    flips = pd.read_csv(tmp_path / "out/flips.csv")
    assert sorted(zip(flips["sigma_w2"], flips["depth"])) == sorted((w, L) for w, L in BOUNDARY.items())
    assert (flips["stop_epoch"] == 75).all()  # stopped at the flat patience point, at chance until then
    # flat runs stop at epoch 75 (25 of 100 saved), plateaus below the threshold earlier (they have risen): more
    assert 0.25 < at100["untrainable_epochs_saved_fraction"] <= 0.4
    assert at100["untrainable_stopped"] == at100["untrainable"]
    # at 50 epochs the take-offs have not passed yet: untrainable there, so no flip, and nothing censored
    assert at50["runs"] == n and at50["flips"] == 0 and at50["untrainable"] == n - trainable + 3
    assert "flips 3 (6.7%, 0 far from the boundary)" in out.stdout
    assert s["audit"] == {"stopped": 0, "reproduced": 0, "differs": []}


def test_replay_script_audits_runs_a_rule_already_stopped(tmp_path, stalled_curve):
    """Stored runs the rule stopped: one the rule as it is stops at the same epoch (a flat curve, at 3E/4), one it
    would not have stopped (the stall of σ_w² 0.8 at depth 5, stopped at 22 by the rule's second version)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from reconent.sweep.store import Store

    stall = stalled_curve[:22]  # as stored by the version that stopped it at epoch 22
    store = Store(str(tmp_path / "data"), "honest")
    for depth, curve, epochs in [(30, [0.1] * 38, 50), (5, stall, 50)]:
        row = syn.train_row(0.8, depth, curve=curve, epochs=epochs, threshold=0.8, sweep="honest")
        store.write_part("train", {**row, "stop": "extrapolate", "stopped_early": True, "stop_bound": 0.5,
                                   "stop_rate": 0.0})
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "analysis/stop_rule/replay.py"), str(tmp_path / "data"),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=root, timeout=300)
    assert out.returncode == 0, out.stderr
    audit = json.loads((tmp_path / "out/summary.json").read_text())["audit"]
    assert audit["stopped"] == 2 and audit["reproduced"] == 1
    assert audit["differs"] == [{"sweep": "honest", "sigma_w2": 0.8, "depth": 5, "seed": 0, "stopped_at": 22,
                                 "rule_now": None}]
    assert "stops 1 of them at the same epoch" in out.stdout
