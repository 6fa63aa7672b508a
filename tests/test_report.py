"""`reconent report`: HTML (self-contained), PNGs and summary.json from stored Parquet results."""
import json

import numpy as np
import pandas as pd
import pytest

from reconent import cli
from reconent.analysis import synthetic as syn
from reconent.analysis.report import HEADLINE, SECTIONS
from reconent.sweep.store import Store

KEYS = HEADLINE + ["notes", "budgets", "true_boundary_by_epochs", "n_probe_not_converged"]


def write_parts(root, name, df: pd.DataFrame, kind: str) -> None:
    """The real write path: one Parquet part per row through reconent.sweep.store (schema v1, atomic)."""
    store = Store(str(root), name)
    for row in df.to_dict("records"):
        store.write_part(kind, {k: v for k, v in row.items() if not (np.isscalar(v) and pd.isna(v))})


@pytest.fixture
def results(tmp_path):
    p, t = syn.grid({1.0: 3, 1.5: 8, 1.76: 20, 2.5: 6}, 30, [2, 4, 8, 16, 24], seeds=(0, 1), sweep="tiny")
    write_parts(tmp_path, "tiny", p, "probe")
    write_parts(tmp_path, "tiny", t, "train")
    (tmp_path / "tiny" / "specs").mkdir(exist_ok=True)
    (tmp_path / "tiny" / "specs" / "spec.yaml").write_text("name: tiny\ngrid:\n  sigma_w2: [1.0, 1.5, 1.76, 2.5]\n")
    return tmp_path / "tiny"


def check_report(out, summary_keys=KEYS):
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "<img" in html
    assert 'src="http' not in html and "<script" not in html  # opens offline
    for s in SECTIONS:
        assert f">{s}</h2>" in html, s
    for png in ("phase.png", "boundary.png", "curves.png", "budgets.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = json.loads((out / "summary.json").read_text())
    assert set(summary_keys) <= set(s)
    assert html.split("</h1>", 1)[1].lstrip().startswith('<p class="budgets"><b>Budgets: probe ')  # first line
    assert {"probe_steps", "probe_depth", "epochs", "threshold", "rtol"} <= set(s["budgets"])
    return html, s


def test_report_from_parquet_store(results, tmp_path, capsys):
    out = tmp_path / "rep"
    assert cli.main(["report", str(results), "-o", str(out), "--n-boot", "50"]) == 0
    html, s = check_report(out)
    assert "name: tiny" in html  # the saved spec is shown
    assert s["n_probe_points"] == 8 and s["n_train_points"] == 40 and s["f1"] == 1.0
    assert s["boundary_distance_depth"] == 0.0 and s["rtol"] == 0.005 and s["threshold"] == 0.8
    assert s["critical_sigma_w2"] == pytest.approx(1.7609, abs=1e-3)
    assert s["saving_factor"] > 1 and s["intervals"]["f1"] == [1.0, 1.0]
    assert "precision 1" in capsys.readouterr().out
    # no budget in the saved spec: the largest stored, and the report says so first
    assert (s["budgets"]["probe_steps"], s["budgets"]["epochs"], s["budgets"]["probe_depth"]) == (938, 5, 30)
    assert s["budgets"]["probe_steps_source"] == s["budgets"]["epochs_source"] == "largest"
    assert "Budgets: probe 938 decoder steps, probe depth 30; training ≤ 5 epochs, threshold 0.8" in html


def test_report_rederives_rules(results, tmp_path):
    out = tmp_path / "rep"
    assert cli.main(["report", str(results), "-o", str(out), "--rtol", "0.001", "--threshold", "0.1",
                     "--n-boot", "0"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["rtol"] == 0.001 and s["threshold"] == 0.1
    assert s["f1"] < 1.0  # every trial beats 0.1 accuracy, and the tighter rtol moves every cutoff deeper


def test_report_edge_cases_are_notes_or_one_line_errors(tmp_path, capsys):
    p, _ = syn.grid({1.2: 5}, 12, [2], sweep="probes_only")
    write_parts(tmp_path, "probes_only", p, "probe")
    out = tmp_path / "rep"
    assert cli.main(["report", str(tmp_path / "probes_only"), "-o", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert any("no training results" in n for n in s["notes"]) and any("single σ_w²" in n for n in s["notes"])
    assert s["precision"] is None and (out / "report.html").exists()
    assert cli.main(["report", str(tmp_path / "nothing"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reconent: error: no results under") and err.count("\n") == 1
    assert cli.main(["report", str(tmp_path / "probes_only"), str(tmp_path / "typo"), "-o", str(out)]) == 2
    assert "typo" in capsys.readouterr().err  # a wrong URI among several is named, not skipped
    old = tmp_path / "old"
    write_parts(tmp_path, "old", p.drop(columns=["relative_entropy_norm_median"]), "probe")
    assert cli.main(["report", str(old), "-o", str(out)]) == 2
    assert "relative_entropy_norm_median" in capsys.readouterr().err


@pytest.mark.slow
def test_report_on_a_tiny_real_sweep(tmp_path):
    from reconent.sweep.run import run  # an import error is a failure, not a skip

    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC.format(storage=tmp_path / "results"))
    s = run(str(spec), progress=False)
    assert s["failed"] == 0, s
    out = tmp_path / "rep"
    assert cli.main(["report", str(tmp_path / "results" / "tiny_real"), "-o", str(out), "--n-boot", "20"]) == 0
    html, summary = check_report(out)
    assert summary["n_probe_points"] == 4 and summary["n_train_points"] == 4 and summary["n_scored"] == 4
    assert summary["probe_seconds"] > 0 and summary["train_seconds"] > 0


TINY_SPEC = """\
name: tiny_real
dataset: mnist5k
grid: {{sigma_w2: [1.0, 1.76], depth: [2, 3], width: [16]}}
probe: {{train_samples: 128, eval_samples: 16}}
train: {{points: all, epochs: 1, train_samples: 128, threshold: 0.3}}
resources: {{cpu: 1}}
device: cpu
storage: {storage}
"""


def test_report_embeds_explain_figures(results, tmp_path, capsys):
    ex = tmp_path / "ex"
    assert cli.main(["explain", "mlp", "-o", str(ex), "--depth", "2", "--width", "32", "--train-epochs", "1",
                     "--train-samples", "256", "--probe-samples", "256", "--eval-samples", "16", "--samples", "2"]) == 0
    out = tmp_path / "rep"
    assert cli.main(["report", str(results), "-o", str(out), "--n-boot", "0", "--explain", str(ex)]) == 0
    html, _ = check_report(out)
    assert ">Interpretability</h2>" in html and html.count("data:image/png;base64,") >= 3 + 3
    capsys.readouterr()
    assert cli.main(["report", str(results), "-o", str(out), "--explain", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "--explain" in err and err.count("\n") == 1


def test_report_escapes_data(tmp_path):
    """Sweep names, notes and saved specs come from data: the template escapes them (no script runs)."""
    from reconent.analysis.core import analyse
    from reconent.analysis.report import write_report

    evil = "<script>alert(1)</script>"
    p, t = syn.grid({1.0: 3, 1.76: 20}, 30, [2, 8, 24], sweep=evil)
    a = analyse(p, t, n_boot=0)
    a.notes.append(f"a note with {evil} & more")
    sweep = tmp_path / "sweep"
    (sweep / "specs").mkdir(parents=True)
    (sweep / "specs" / "spec.yaml").write_text(f"name: x  # {evil}\n")
    out = tmp_path / "rep"
    write_report(a, out, uris=[sweep])
    html = (out / "report.html").read_text()
    assert "<script" not in html.lower()
    assert f"<title>reconent report: {'&lt;script&gt;alert(1)&lt;/script&gt;'}</title>" in html
    assert "<li>a note with &lt;script&gt;alert(1)&lt;/script&gt; &amp; more</li>" in html
    assert "name: x  # &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<li><b>Probe cutoff</b>" in html  # the template's own markup stays HTML


def test_a_log_sigma_axis_labels_few_values_by_name_and_many_by_decade():
    """Swept σ_w² values label a log axis when they fit; 31 of them (the phase diagram) overlapped."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reconent.analysis.figures import _sigma_ticks

    few, many = [0.5, 1.0, 1.76, 3.0], list(np.round(np.linspace(0.1, 6.0, 31), 2))
    for xs, expect in ((few, [f"{x:g}" for x in few]), (many, None)):
        fig, ax = plt.subplots()
        ax.set_xscale("log")
        ax.plot(xs, np.ones(len(xs)))
        _sigma_ticks(ax, xs, True)
        fig.canvas.draw()
        lo, hi = ax.get_xlim()
        labels = [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi]
        plt.close(fig)
        if expect:
            assert labels == expect
        else:
            assert 3 <= len(labels) <= 10 and {"0.1", "1", "5"} <= set(labels), labels
