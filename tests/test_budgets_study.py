"""The budgets study's script (analysis/budgets/study.py), run as its README says on stored rows: the probe's cutoff
at every checkpoint and the true L* bracket at every epoch budget reach tables.md and study.json."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from reconent.analysis import synthetic as syn

ROOT = Path(__file__).resolve().parents[1]


def test_study_tables_read_the_probe_at_each_checkpoint_and_the_truth_at_each_budget(tmp_path):
    from reconent.sweep.store import Store

    probes, trains = Store(str(tmp_path / "data"), "budgets_probe"), Store(str(tmp_path / "data"), "budgets_train")
    probes.write_part("probe", syn.probe_row(0.6, 40, 20, steps=3000, sweep="budgets_probe",
                                             checkpoints={63: 8, 938: 14}))
    # σ_w² 4: depth 6 passes 0.8 at epoch 3, depth 10 at epoch 12, depth 14 never within its 20 epochs
    for d, curve in ((6, [0.3, 0.6, 0.85]), (10, [0.5] * 11 + [0.82]), (14, [0.4] * 20)):
        trains.write_part("train", syn.train_row(4.0, d, curve=curve, epochs=20, threshold=0.8, sweep="budgets_train"))
    # a second seed at depth 14 passes at epoch 4: it must not move seed 0's bracket, and is shown beside it
    Store(str(tmp_path / "data"), "budgets_train_seed1").write_part("train", syn.train_row(
        4.0, 14, curve=[0.3, 0.5, 0.7, 0.9], epochs=20, threshold=0.8, seed=1, sweep="budgets_train_seed1"))
    run = subprocess.run([sys.executable, str(ROOT / "analysis/budgets/study.py"), str(tmp_path / "data"),
                          str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    tables = (tmp_path / "out/tables.md").read_text()
    assert "| 0.6 | 40 | 8 | 14 | 20 |" in tables, tables  # 63, 938 and 3000 steps
    s = json.loads((tmp_path / "out/study.json").read_text())
    (p,) = s["probes"]
    assert p["last_step"] == {"from": 938, "to": 3000, "change": 6, "relative": 6 / 14}
    by = {r["epochs"]: r for r in s["truth_by_epochs"]["0.8"] if r["sigma_w2"] == 4.0}
    # 2 epochs: nothing passed yet; 5: depth 6 passed, 10 failed; 20: 10 passed, 14 failed
    assert [(by[e]["lower"], by[e]["upper"]) for e in (2, 5, 20)] == [(0, 6), (6, 10), (10, 14)], by
    assert "| 4 | < 6 | < 6 | 6 … 9 | 6 … 9 | 10 … 13 |" in tables, tables  # 1, 2, 5, 10, 20 epochs
    (pair,) = s["seeds"]
    assert pair["depth"] == 14 and pair["seeds"]["0"]["passed_at"] is None and pair["seeds"]["1"]["passed_at"] == 4
    assert "| 4 | 14 | – (0.400) | 4 (0.900) |" in tables, tables
    figures = {"cutoff_vs_steps.png", "profiles_by_steps.png", "truth_vs_epochs.png", "curves.png"}
    assert {f.name for f in (tmp_path / "out").iterdir()} >= figures
