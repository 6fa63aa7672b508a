"""Verdicts decided early: a run the stop rule ended is untrainable by prediction, marked wherever verdicts appear."""
from __future__ import annotations

import math

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
