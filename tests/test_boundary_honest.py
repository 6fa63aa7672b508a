"""The honest-budget boundary study (analysis/boundary_mnist5k/honest/): its two specs train alike, and compare.py reads
the stored rows of both into brackets, seconds, the probe's agreement and the goal's ratios."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from reconent.analysis import synthetic as syn

ROOT = Path(__file__).resolve().parents[1]
HONEST = ROOT / "analysis/boundary_mnist5k/honest"
PASS, FAIL, FLAT3 = [0.5, 0.9], [0.1] * 10, [0.1] * 3  # passes 0.8 at epoch 2; ran its 10 epochs; stopped at 3


def test_the_search_and_the_grid_train_alike_over_one_depth_range():
    """The comparison is only fair when both specs train with the same settings, columns and depth range."""
    from reconent.sweep.spec import load_spec

    s, g = load_spec(HONEST / "search.yaml"), load_spec(HONEST / "grid.yaml")
    assert s.train.model_dump(exclude={"points"}) == g.train.model_dump(exclude={"points"})
    assert s.train.stop == "extrapolate" and s.train.threshold == 0.8
    assert s.axes()["sigma_w2"] == g.axes()["sigma_w2"] and len(g.axes()["sigma_w2"]) == 8
    assert len([p for p in g.points() if p["kind"] == "train"]) == 40
    depths = g.axes()["depth"]
    assert s.boundary.depth.max == max(depths) and s.boundary.depth.min <= min(depths)
    assert g.axes()["seed"] == s.axes()["seed"][:1]  # the grid's networks are the search's first seed
    assert s.probe.budget["steps"] == 938 and min(s.axes()["depth"]) >= s.boundary.depth.max  # probes cover the range
    assert s.storage == g.storage == "analysis/boundary_mnist5k/data" and s.name != g.name


def _row(w, d, curve, minute, seconds, sweep, stopped=False):
    r = syn.train_row(w, d, curve=curve, epochs=10, threshold=0.8, sweep=sweep)
    r.update(seconds=float(seconds), stopped_early=stopped,
             started_at=pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(minutes=minute))
    r["finished_at"] = r["started_at"] + pd.Timedelta(seconds=seconds)
    return r


def _store(root: Path):
    """σ_w² 1: grid 4, 8 pass, 16 and 32 fail (32 stopped by the rule): 8 … 15; the search 10, 11 pass, 12 fails:
    11 … 11. σ_w² 2: grid 4 passes, 8, 16, 32 fail: 4 … 7; the search 5 passes, 6 fails: 5 … 5. Seconds: 10 per
    layer in the grid (1,200 in all), 10 per layer in the search (440). Probes predict 12 and 5."""
    from reconent.sweep.store import Store

    grid, search = Store(str(root), "boundary_honest_grid"), Store(str(root), "boundary_honest")
    for w, c in ((1.0, 12), (2.0, 5)):
        search.write_part("probe", syn.probe_row(w, 40, c, sweep="boundary_honest"))
    for i, (w, d, curve) in enumerate([(1.0, 4, PASS), (1.0, 8, PASS), (1.0, 16, FAIL), (2.0, 4, PASS), (2.0, 8, FAIL),
                                       (2.0, 16, FAIL), (2.0, 32, FAIL)]):
        grid.write_part("train", _row(w, d, curve, i, 10 * d, "boundary_honest_grid"))
    grid.write_part("train", _row(1.0, 32, FLAT3, 7, 320, "boundary_honest_grid", stopped=True))
    order = [(1.0, 10, PASS), (2.0, 5, PASS), (1.0, 12, FAIL), (2.0, 6, FAIL), (1.0, 11, PASS)]
    for i, (w, d, curve) in enumerate(order):
        search.write_part("train", _row(w, d, curve, i, 10 * d, "boundary_honest"))


def _compare(data, out, *extra):
    return subprocess.run([sys.executable, str(HONEST / "compare.py"), str(data), "--out", str(out), "--step", "2",
                           "--load-log", str(out / "no-load.log"), *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_compare_reads_brackets_seconds_agreement_and_the_goal_from_stored_rows(tmp_path):
    _store(tmp_path / "data")
    run = _compare(tmp_path / "data", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    r = json.loads((tmp_path / "out/compare.json").read_text())
    g, s, q = r["grid"], r["search"], r["ratios"]
    assert (g["trainings"], s["trainings"]) == (8, 5)
    assert (g["training_seconds"], s["training_seconds"]) == (1200.0, 440.0)
    assert g["stopped_early"] == 1 and s["stopped_early"] == 0
    # depth × epochs run: the grid's 4+8+4 (2 epochs), 16+8+16+32 (10) and 32 (3); the search's 10+5+11 (2), 12+6 (10)
    assert (g["layer_epochs"], s["layer_epochs"]) == (16 * 2 + 72 * 10 + 32 * 3, 26 * 2 + 18 * 10)
    assert q["layer_epochs_ratio"] == pytest.approx(232 / 848)
    assert g["brackets"]["1.0"] | {"width": None} == {"lower": 8.0, "upper": 16.0, "censored": False,
                                                      "predicted": False, "width": None}
    assert [g["brackets"][k]["width"] for k in ("1.0", "2.0")] == [8.0, 4.0]
    assert [s["brackets"][k]["width"] for k in ("1.0", "2.0")] == [1.0, 1.0]
    assert q["grid_median_width"] == 6.0 and q["search_median_width"] == 1.0
    assert q["seconds_ratio"] == pytest.approx(440 / 1200) and q["width_ratio"] == pytest.approx(1 / 6)
    assert q["goal_met"] is True
    assert [c["agree"] for c in r["columns"]] == [True, True]  # 11 lies in 8 … 15, 5 in 4 … 7
    # the probe (12 and 5): right on every grid point; in the search it calls depth 12 at σ_w² 1 trainable (wrong)
    assert (g["probe_agreement"]["tp"], g["probe_agreement"]["tn"], g["probe_agreement"]["fp"]) == (3, 5, 0)
    assert (s["probe_agreement"]["tp"], s["probe_agreement"]["fp"], s["probe_agreement"]["tn"]) == (3, 1, 1)
    assert s["probe_agreement"]["precision"] == pytest.approx(0.75)
    # prefixes by start time: after 2 trainings nothing is bracketed; after 4, σ_w² 1 is 10 … 11 (width 2)
    pre = {p["trainings"]: p for p in r["prefixes"]}
    assert sorted(pre) == [2, 4, 5]
    assert pre[2]["columns_both_bracket"] == 0 and pre[2]["median_width"] is None
    assert pre[4]["median_width"] == 1.5 and pre[4]["training_seconds"] == 330.0
    assert pre[5]["seconds_ratio"] == pytest.approx(q["seconds_ratio"])
    md = (tmp_path / "out/compare.md").read_text()
    assert "| 1 | 12.0 | 8 … 15 | 8 | 11 … 11 | 1 | 3 | yes |" in md and "goal met: yes" in md
    assert md in run.stdout


def test_compare_at_a_smaller_epoch_budget_reads_anytime_verdicts(tmp_path):
    """At 1 epoch nothing has passed yet (every run passes at epoch 2): every depth is untrainable, so each
    bracket is '< shallowest trained depth'; the run stopped at epoch 3 is observed there, not predicted."""
    _store(tmp_path / "data")
    run = _compare(tmp_path / "data", tmp_path / "out", "--epochs", "1")
    assert run.returncode == 0, run.stderr
    r = json.loads((tmp_path / "out/compare.json").read_text())
    assert r["epochs"] == 1
    assert {k: (b["lower"], b["upper"]) for k, b in r["grid"]["brackets"].items()} == {"1.0": (0.0, 4.0),
                                                                                        "2.0": (0.0, 4.0)}
    assert {k: (b["lower"], b["upper"]) for k, b in r["search"]["brackets"].items()} == {"1.0": (0.0, 10.0),
                                                                                          "2.0": (0.0, 5.0)}


def test_compare_says_which_study_is_missing_and_exits_2(tmp_path):
    from reconent.sweep.store import Store

    Store(str(tmp_path / "data"), "boundary_honest").write_part(
        "train", _row(1.0, 10, PASS, 0, 100, "boundary_honest"))
    run = _compare(tmp_path / "data", tmp_path / "out")
    assert run.returncode == 2 and "boundary_honest_grid" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out/compare.json").exists()
    run = _compare(tmp_path / "nowhere", tmp_path / "out")
    assert run.returncode == 2 and "not a folder" in run.stderr
