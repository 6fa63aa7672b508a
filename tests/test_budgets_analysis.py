"""Budgets in the analysis: anytime training verdicts, the true boundary by epoch budget, one probe budget and one
training budget per analysis (never mixed), the probe cutoff's convergence over checkpoints, and reports that state
their budgets. Synthetic rows only (no Ray, no training)."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from reconent import cli
from reconent.analysis import (analyse, epoch_budgets, probe_budgets, probe_cutoffs, train_verdicts,
                               true_boundary_by_epochs)
from reconent.analysis import synthetic as syn
from reconent.analysis.report import budgets_text, spec_budgets, write_report

BOUNDARY = {1.0: 3, 1.5: 8, 1.76: 20, 2.5: 6}
DEPTHS = [2, 4, 8, 16, 24]


def _verdicts(rows, threshold=None, epochs=None, notes=None):
    return list(train_verdicts(pd.DataFrame(rows), threshold, notes, epochs=epochs)["trainable"])


def _is_unknown(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# ------------------------------------------------------------------ anytime verdicts
def test_a_late_pass_is_untrainable_before_it_and_trainable_after():
    late = syn.train_row(1.0, 8, curve=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 0.9, 0.9], epochs=10, threshold=0.8)
    assert late["epochs_run"] == 8 and late["accuracy"][-1] == 0.85  # stopped at its first pass, as training does
    assert _verdicts([late], epochs=5) == [False]
    assert _verdicts([late], epochs=7) == [False]
    assert _verdicts([late], epochs=8) == [True]
    assert _verdicts([late], epochs=10) == [True]
    assert _verdicts([late], epochs=1000) == [True]  # passed at 8: trainable for every budget >= 8
    assert _verdicts([late]) == [True]  # epochs None: its own budget, as before
    t = train_verdicts(pd.DataFrame([late]), epochs=5)
    assert t["passed_at"].iloc[0] == 8 and t["epochs_used"].iloc[0] == 5


def test_an_early_stop_at_a_lower_own_threshold_is_unknown_for_a_higher_one_not_false():
    early = syn.train_row(1.0, 4, curve=[0.3, 0.65, 0.7, 0.9], epochs=10, threshold=0.6)
    assert early["accuracy"] == [0.3, 0.65]  # stopped at epoch 2, its own threshold 0.6
    notes = []
    v = _verdicts([early], threshold=0.8, epochs=5, notes=notes)
    assert _is_unknown(v[0]) and v[0] is not False
    assert any("censored" in n for n in notes)
    assert _is_unknown(_verdicts([early], threshold=0.8)[0])  # at its own budget of 10 too
    assert _verdicts([early], threshold=0.8, epochs=2) == [False]  # it did run 2 epochs below 0.8
    assert _verdicts([early], threshold=0.6, epochs=5) == [True]


def test_a_short_budget_without_a_pass_is_unknown_at_a_longer_one():
    short = syn.train_row(1.0, 4, curve=[0.2, 0.3, 0.4], epochs=3, threshold=0.8)
    notes = []
    assert _is_unknown(_verdicts([short], epochs=5, notes=notes)[0])
    assert any("epoch budget below the 5 epochs" in n for n in notes), notes
    assert _verdicts([short], epochs=3) == [False] and _verdicts([short], epochs=2) == [False]
    assert _verdicts([short]) == [False]  # its own budget: it ran all of it
    passed = syn.train_row(1.0, 4, curve=[0.2, 0.9], epochs=3, threshold=0.8)
    assert _verdicts([passed], epochs=100) == [True]  # passed at 2 <= 100: a shorter budget is enough


def test_diverged_is_untrainable_at_every_budget():
    div = dict(syn.train_row(1.0, 4, curve=[0.1], epochs=10), status="diverged")
    for E in (None, 1, 5, 10, 500):  # it never ran epochs 2.., yet it is not unknown: it diverged
        assert _verdicts([div], epochs=E) == [False]
        assert _verdicts([div], threshold=0.5, epochs=E) == [False]


def test_the_verdicts_at_each_rows_own_budget_are_todays():
    rows = [syn.train_row(1.0, d, pk, epochs=5) for d, pk in ((2, 0.9), (4, 0.2), (6, 0.85))]
    assert _verdicts(rows) == _verdicts(rows, epochs=5) == [True, False, True]


# ------------------------------------------------------------------ true boundary by epoch budget
def test_epoch_budgets_are_1_2_5_per_decade_up_to_the_largest():
    assert epoch_budgets(1) == [1]
    assert epoch_budgets(5) == [1, 2, 5]
    assert epoch_budgets(20) == [1, 2, 5, 10, 20]
    assert epoch_budgets(33) == [1, 2, 5, 10, 20, 33]
    assert epoch_budgets(1000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    assert epoch_budgets(300) == [1, 2, 5, 10, 20, 50, 100, 200, 300]
    assert epoch_budgets(None) == [] and epoch_budgets(0) == []


def _slow_deep_rows(budget=20):
    """σ_w² 1.7609: depth d passes at epoch d/2 up to depth 16, depth 32 never (it runs its whole budget);
    σ_w² 1.0: every depth (2, 4, 8) passes at epoch 1."""
    rows = []
    for d in (2, 4, 8, 16, 32):
        curve = ([0.3] * (d // 2 - 1) + [0.9]) if d <= 16 else [0.2] * budget
        rows.append(syn.train_row(1.7609, d, curve=curve[:budget], epochs=budget))
    rows += [syn.train_row(1.0, d, curve=[0.95], epochs=budget) for d in (2, 4, 8)]
    return pd.DataFrame(rows)


def test_true_boundary_by_epochs_moves_with_the_budget():
    rec = true_boundary_by_epochs(_slow_deep_rows())
    assert sorted({r["epochs"] for r in rec}) == [1, 2, 5, 10, 20]
    crit = {r["epochs"]: (r["lower"], r["upper"], r["censored"]) for r in rec if r["sigma_w2"] == 1.76}
    assert crit == {1: (2, 4, False), 2: (4, 8, False), 5: (8, 16, False), 10: (16, 32, False),
                    20: (16, 32, False)}
    easy = [r for r in rec if r["sigma_w2"] == 1.0]
    assert len(easy) == 5 and all(r["censored"] and r["upper"] is None and r["lower"] == 8 for r in easy)
    r = rec[0]
    assert set(r) == {"epochs", "dataset", "arch", "activation", "width", "channels", "sigma_b2", "sigma_w2",
                      "lower", "upper", "censored", "predicted"}
    assert (r["dataset"], r["arch"], r["activation"], r["width"], r["channels"], r["sigma_b2"]) == (
        "mnist5k", "mlp", "tanh", 784, None, 0.05)
    assert [x["epochs"] for x in true_boundary_by_epochs(_slow_deep_rows(), budgets=[3])] == [3, 3]
    assert {x["lower"] for x in true_boundary_by_epochs(_slow_deep_rows(), budgets=[3]) if x["sigma_w2"] == 1.76} \
        == {4}


def test_analysis_and_summary_carry_the_boundary_by_epochs():
    t = _slow_deep_rows(budget=7)  # the largest budget (7) is not in 1, 2, 5, ...: it is added
    p = pd.DataFrame([syn.probe_row(1.7609, 32, 12), syn.probe_row(1.0, 32, 9)])
    a = analyse(p, t, n_boot=0)
    assert sorted({r["epochs"] for r in a.true_boundary_by_epochs()}) == [1, 2, 5, 7]
    s = json.loads(json.dumps(a.summary()))  # plain JSON
    assert s["true_boundary_by_epochs"] == a.true_boundary_by_epochs()
    at7 = [r for r in s["true_boundary_by_epochs"] if r["epochs"] == 7 and r["sigma_w2"] == 1.76][0]
    assert (at7["lower"], at7["upper"]) == (8, 16)  # depth 8 passes at epoch 4; 16 would only at 8 > 7
    b = a.boundaries.set_index("sigma_w2").loc[1.7609]
    assert (b["true_lo"], b["true_hi"] + 1) == (at7["lower"], at7["upper"])  # the analysis reads E = 7 too


# ------------------------------------------------------------------ one probe budget, one training budget
def _two_budgets():
    """The same points probed at 63 steps (cutoffs halved) and at 938 (with a checkpoint at 234: cutoff - 2)."""
    p938 = [syn.probe_row(w, 30, c, checkpoints={234: c - 2}) for w, c in BOUNDARY.items()]
    p63 = [syn.probe_row(w, 30, max(c // 2, 1), steps=None, epochs=1) for w, c in BOUNDARY.items()]
    _, t = syn.grid(BOUNDARY, 30, DEPTHS)
    return pd.DataFrame(p63 + p938), t


def test_two_probe_budgets_in_one_sweep_do_not_mix():
    p, t = _two_budgets()
    assert probe_budgets(p) == {"final": [63, 938], "checkpoints": [63, 234, 938]}
    a = analyse(p, t, n_boot=0)
    pred = a.boundaries.set_index("sigma_w2")["pred_lo"].to_dict()
    assert pred == {w: float(c) for w, c in BOUNDARY.items()}  # the 938-step cutoffs only
    assert len(a.probes) == 4 and set(a.probes["steps_run"]) == {938}
    assert a.budgets["probe_steps"] == 938 and a.budgets["probe_checkpoints"] == [234, 938]
    assert a.budgets["probe_depth"] == 30 and a.budgets["epochs"] == 5 and a.budgets["threshold"] == 0.8
    assert a.budgets["probe_steps_source"] == "largest"
    note = [n for n in a.notes if "left out" in n and "decoder steps" in n]
    assert len(note) == 1 and "4 probe(s) at 63 decoder steps" in note[0] and "--steps 63" in note[0], a.notes
    assert a.scores["f1"] == 1.0

    b = analyse(p, t, n_boot=0, probe_steps=63)
    assert b.boundaries.set_index("sigma_w2")["pred_lo"].to_dict() == {w: float(max(c // 2, 1))
                                                                        for w, c in BOUNDARY.items()}
    assert b.budgets["probe_steps"] == 63 and b.budgets["probe_steps_source"] == "given"
    assert any("at 938 decoder steps (checkpoints 234) left out" in n and "--steps 938" in n for n in b.notes), b.notes

    c = analyse(p, t, n_boot=0, probe_steps=234)  # read at the 938-step rows' checkpoint
    assert c.boundaries.set_index("sigma_w2")["pred_lo"].to_dict() == {w: float(k - 2) for w, k in BOUNDARY.items()}
    assert c.probes["from_checkpoint"].all() and c.probes["relative_entropy_median"].isna().all()
    assert c.budgets["probe_steps"] == 234

    d = analyse(p, t, n_boot=0, probe_steps=500)
    assert not len(d.probes) and any("no probe can be read at 500 decoder steps" in n for n in d.notes)


def test_probe_cutoffs_without_a_budget_reads_every_final_profile_as_before():
    p, _ = _two_budgets()
    c = probe_cutoffs(p)
    assert len(c) == 8 and sorted(c["cutoff"]) == sorted([max(k // 2, 1) for k in BOUNDARY.values()]
                                                         + list(BOUNDARY.values()))
    legacy = p.drop(columns=["steps_run", "checkpoint_steps", "checkpoint_norm_median"])  # hand-made/old rows
    c = probe_cutoffs(legacy)
    assert len(c) == 8 and c["converged"].isna().all()
    a = analyse(legacy.iloc[4:], None, n_boot=0)  # no recorded budget: nothing is filtered
    assert a.budgets["probe_steps"] is None and len(a.probes) == 4


def test_training_budgets_give_anytime_verdicts_at_one_epoch_budget():
    p = pd.DataFrame([syn.probe_row(1.0, 30, 6)])
    five = [syn.train_row(1.0, d, curve=[0.3, 0.9] if d <= 6 else [0.2] * 5, epochs=5) for d in (2, 4, 6, 8, 12)]
    # the 100-epoch runs: depth 8 passes late (epoch 30), 12 never
    hundred = [syn.train_row(1.0, d, curve=[0.3, 0.9] if d <= 6 else ([0.3] * 29 + [0.9] if d == 8 else [0.2] * 100),
                             epochs=100, seed=1) for d in (2, 4, 6, 8, 12)]
    t = pd.DataFrame(five + hundred)
    a5 = analyse(p, t, n_boot=0, epochs=5)
    v = a5.trains.set_index(["seed", "depth"])["trainable"]
    assert all(v[(s, d)] is True for s in (0, 1) for d in (2, 4, 6))
    assert all(v[(s, d)] is False for s in (0, 1) for d in (8, 12))  # both budgets speak at 5 epochs
    assert a5.scores["n_scored"] == 10 and a5.budgets["epochs"] == 5 and a5.budgets["train_epochs_stored"] == [5, 100]
    a = analyse(p, t, n_boot=0)  # default: the largest budget, 100
    v = a.trains.set_index(["seed", "depth"])["trainable"]
    assert a.budgets["epochs"] == 100 and v[(1, 8)] is True and v[(1, 12)] is False
    assert _is_unknown(v[(0, 8)]) and _is_unknown(v[(0, 12)])  # 5-epoch runs that did not pass: unknown at 100
    assert a.scores["n_scored"] == 8 and any("epoch budgets 5, 100" in n for n in a.notes)


# ------------------------------------------------------------------ convergence of the cutoff
def test_convergence_compares_the_last_two_checkpoints_up_to_the_budget():
    rows = [syn.probe_row(1.0, 30, 20, checkpoints={58: 2, 234: 10}),  # 10 -> 20: moved
            syn.probe_row(1.5, 30, 20, checkpoints={58: 2, 234: 19}),  # 19 -> 20: within 1 layer
            syn.probe_row(2.0, 60, 40, checkpoints={234: 38}),  # 38 -> 40: within 5% of 40
            syn.probe_row(2.5, 60, 40, checkpoints={234: 37}),  # 37 -> 40: more than 5%
            syn.probe_row(3.0, 30, 5),  # one reading only
            syn.probe_row(3.5, 30, 5, checkpoints={938: 5})]  # only the final checkpoint
    c = probe_cutoffs(pd.DataFrame(rows), steps=938).set_index("sigma_w2")
    assert c["converged"].to_dict() == {1.0: False, 1.5: True, 2.0: True, 2.5: False, 3.0: None, 3.5: None}
    assert c.loc[1.0, "cutoff_prev"] == 10 and c.loc[1.0, "steps_prev"] == 234
    early = probe_cutoffs(pd.DataFrame(rows[:2]), steps=234).set_index("sigma_w2")
    assert early["converged"].to_dict() == {1.0: False, 1.5: False}  # 2 -> 10 and 2 -> 19 between 58 and 234
    assert list(early["cutoff"]) == [10, 19]

    t = pd.DataFrame([syn.train_row(w, d, 0.9) for w in (1.0, 1.5) for d in (4, 8)])
    a = analyse(pd.DataFrame(rows), t, n_boot=0)
    assert a.summary()["n_probe_not_converged"] == 2
    b = a.boundaries.set_index("sigma_w2")
    assert b.loc[1.0, "converged"] is False and b.loc[1.5, "converged"] is True and b.loc[3.0, "converged"] is None
    assert any("2 of the 6 probe cutoff(s)" in n and "not converged" in n for n in a.notes), a.notes


# ------------------------------------------------------------------ reports state their budgets
def _write(root, name, df, kind):
    from reconent.sweep.store import Store

    store = Store(str(root), name)
    for row in df.to_dict("records"):
        store.write_part(kind, {k: v for k, v in row.items() if not (np.isscalar(v) and pd.isna(v))})


@pytest.fixture
def mixed(tmp_path):
    """One sweep on disk with probes at 63 and 938 steps (checkpoints 58, 234, 938; σ_w² 1.76 moved after 234)
    and training at 5 and 10 epochs, threshold 0.6; its saved spec names 234 steps and 5 epochs."""
    probes = [syn.probe_row(w, 30, c, checkpoints={58: max(c // 3, 1), 234: c - (4 if w == 1.76 else 0)},
                            sweep="mixed") for w, c in BOUNDARY.items()]
    probes += [syn.probe_row(w, 30, max(c // 2, 1), steps=None, epochs=1, sweep="mixed") for w, c in BOUNDARY.items()]
    trains = [syn.train_row(w, d, 0.9 if d <= c else 0.2, epochs=E, threshold=0.6, seed=s, sweep="mixed")
              for w, c in BOUNDARY.items() for d in DEPTHS for s, E in ((0, 5), (1, 10))]
    _write(tmp_path, "mixed", pd.DataFrame(probes), "probe")
    _write(tmp_path, "mixed", pd.DataFrame(trains), "train")
    (tmp_path / "mixed" / "specs").mkdir(exist_ok=True)
    (tmp_path / "mixed" / "specs" / "spec.yaml").write_text(
        "name: mixed\nprobe: {steps: 234, epochs: null, checkpoints: auto}\n"
        "train: {points: all, epochs: 5, threshold: 0.6}\n")
    return tmp_path / "mixed"


def _first_line_after_title(html: str) -> str:
    after = html.split("</h1>", 1)[1].lstrip()
    return after.split("</p>", 1)[0]


def test_the_report_states_its_budgets_and_defaults_to_the_specs(mixed, tmp_path, capsys):
    out = tmp_path / "rep"
    assert cli.main(["report", str(mixed), "-o", str(out), "--n-boot", "0"]) == 0
    printed = capsys.readouterr().out
    html = (out / "report.html").read_text()
    s = json.loads((out / "summary.json").read_text())
    first = _first_line_after_title(html)
    assert "Budgets: probe 234 decoder steps (checkpoints 58, 234, 938), probe depth 30; training ≤ 5 epochs " \
           "(budgets stored: 5, 10; anytime verdicts), threshold 0.6" in first, first
    assert printed.splitlines()[0].startswith("Budgets: probe 234 decoder steps (checkpoints 58, 234, 938)")
    b = s["budgets"]
    assert (b["probe_steps"], b["epochs"], b["threshold"], b["probe_depth"]) == (234, 5, 0.6, 30)
    assert b["probe_steps_source"] == b["epochs_source"] == "spec" and b["rtol"] == 0.005
    assert s["n_probe_points"] == 4  # the 938-step rows read at their 234 checkpoint; the 63-step ones left out
    assert any("4 probe(s) at 63 decoder steps" in n and "--steps 63" in n for n in s["notes"])
    assert s["n_probe_not_converged"] == 4  # 58 -> 234: every cutoff still moved
    assert "<li>Budgets: probe 234" in html  # the Method section lists them too
    assert (out / "budgets.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "budgets.png" in s["figures"]
    assert sorted({r["epochs"] for r in s["true_boundary_by_epochs"]}) == [1, 2, 5, 10]
    assert all(set(r) >= {"epochs", "sigma_w2", "lower", "upper", "censored", "dataset", "arch"}
               for r in s["true_boundary_by_epochs"])


def test_report_budget_options_and_the_not_converged_marking(mixed, tmp_path):
    out = tmp_path / "rep"
    assert cli.main(["report", str(mixed), "-o", str(out), "--n-boot", "0", "--steps", "938", "--epochs", "10"]) == 0
    html = (out / "report.html").read_text()
    s = json.loads((out / "summary.json").read_text())
    assert "Budgets: probe 938 decoder steps (checkpoints 58, 234, 938), probe depth 30; training ≤ 10 epochs" \
        in _first_line_after_title(html)
    assert s["budgets"]["probe_steps_source"] == s["budgets"]["epochs_source"] == "given"
    assert s["n_probe_not_converged"] == 1  # σ_w² 1.76 moved from 16 to 20 between 234 and 938
    assert "NOT converged (1 of 1 seed)" in html and "probe converged" in html
    assert "1 probe cutoff(s) the prediction reads had not converged" in html
    assert any("1 of the 4 probe cutoff(s)" in n for n in s["notes"])
    assert cli.main(["report", str(mixed), "-o", str(tmp_path / "r63"), "--n-boot", "0", "--steps", "63"]) == 0
    s63 = json.loads((tmp_path / "r63" / "summary.json").read_text())
    assert s63["budgets"]["probe_steps"] == 63 and s63["n_probe_points"] == 4
    assert s63["budgets"]["probe_checkpoints"] == [] and s63["n_probe_not_converged"] == 0


def test_spec_budgets_read_steps_or_the_epochs_rows_steps():
    p, _ = _two_budgets()
    assert spec_budgets([("a", "probe: {steps: 938}\ntrain: {points: all, epochs: 20}\n")], p) == (938, 20)
    # the budget given as epochs: the steps those rows ran
    assert spec_budgets([("a", "probe: {epochs: 1, steps: null}\ntrain: {points: none, epochs: 3}\n")], p) == (63, None)
    assert spec_budgets([("a", "(no saved spec found under specs/spec.yaml)")], p) == (None, None)
    assert spec_budgets([("a", "probe: {steps: 63}"), ("b", "probe: {steps: 938}")], p) == (938, None)


def test_budgets_text_names_what_was_read():
    b = dict(probe_steps=938, probe_checkpoints=[58, 234, 938], probe_depth=20, epochs=5, threshold=0.6,
             train_epochs_stored=[5])
    assert budgets_text(b) == ("Budgets: probe 938 decoder steps (checkpoints 58, 234, 938), probe depth 20; "
                               "training ≤ 5 epochs, threshold 0.6")
    b.update(probe_depth=[10, 20], threshold=[0.6, 0.8], probe_checkpoints=[], epochs_source="largest")
    assert budgets_text(b) == ("Budgets: probe 938 decoder steps, probe depths 10, 20 (the deepest per σ_w² and seed "
                               "is read); training ≤ 5 epochs, thresholds 0.6, 0.8 (each trial's own) "
                               "[epochs: the largest stored]")
    assert budgets_text(dict(probe_depth=None, epochs=None)) == "Budgets: no probes; no training"


def test_report_figures_at_a_checkpoint_budget(tmp_path):
    """Read at a checkpoint, only the normalised profile exists: the figures draw it rather than fail."""
    p, t = _two_budgets()
    a = analyse(p, t, n_boot=0, probe_steps=234)
    s = write_report(a, tmp_path / "rep")
    assert {"phase.png", "boundary.png", "curves.png", "budgets.png"} <= set(s["figures"])
