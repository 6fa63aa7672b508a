"""`reconent report RESULTS_URI -o DIR`: a self-contained HTML report, its figures as PNG, and summary.json."""
from __future__ import annotations

import base64
import datetime as dt
import html
import json
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from . import figures
from .core import Analysis, analyse
from .frames import AnalysisError, group_label, load

SECTIONS = ["Summary", "Phase diagram", "Boundaries", "Entropy vs depth", "Agreement", "Cost", "Method",
            "Sweep spec", "Versions"]
HEADLINE = ["n_probe_points", "n_train_points", "n_scored", "precision", "recall", "f1", "balanced_accuracy",
            "boundary_distance_depth", "boundary_distance_log_depth", "probe_seconds", "train_seconds",
            "saving_factor", "critical_sigma_w2", "rtol", "threshold"]
METHOD = """<ul>
<li><b>Probe cutoff</b> is re-derived from each probe's stored median normalised profile S_ℓ/S_L with the rtol above:
the deepest layer whose value differs from 1 by more than rtol. One deep probe speaks for every shallower depth
(prefix property), so the deepest probe per (σ_w², seed) is used.</li>
<li><b>Predicted trainable</b>(σ_w², depth) = depth ≤ cutoff. With several seeds a training trial is predicted by
the probe of its own seed (same initial weights), else by the median cutoff; L* per σ_w² is the median over seeds
with a 95% bootstrap interval. If a probe saw no plateau (cutoff = depth−1), L* ≥ its depth and deeper trials are
not scored.</li>
<li><b>Trainable</b> = some epoch's accuracy &gt; threshold, re-derived from the stored accuracy curve. A run that
stopped early at its own lower threshold cannot speak for a higher one: unknown (censored), not scored.
Diverged runs are untrainable. With several seeds a depth is trainable when at least half of its seeds are.</li>
<li><b>True boundary</b> per σ_w²: walking the trained depths upwards, the deepest trainable depth before the first
untrainable one; the truth lies between it and the first untrainable depth − 1, and boundary distances are gaps
between intervals (0 when the prediction falls inside). Log-depth distances use ln(max(depth, 1)).</li>
<li><b>Theory</b>: 6·ξ_c(σ_w², σ_b²) and the critical σ_w² (χ₁ = 1) from reconent.theory with each group's own σ_b²
and activation.</li>
<li><b>Cost</b>: the rows' wall-clock <code>seconds</code>. Training stops early once the threshold is exceeded, so
trainable points cost less than the full epoch budget.</li>
</ul>"""
CSS = """body{font-family:system-ui,sans-serif;max-width:1280px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}td:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%;height:auto;display:block;margin:.6em 0}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em}.notes li{color:#8a4b00}
.muted{color:#666;font-size:.9em}"""


def _fmt(v, nd=3):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "∞" if isinstance(v, float) and np.isinf(v) and v > 0 else "–"
    if isinstance(v, (float, np.floating)):
        return f"{v:.{nd}g}"
    return html.escape(str(v))


def _table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in df.itertuples(index=False))
    return f"<table><tr>{head}</tr>{rows}</table>"


def _img(path: Path, alt: str) -> str:
    b64 = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _spec_texts(uris) -> list[tuple[str, str]]:
    """The saved resolved spec of each sweep (`<uri>/specs/spec.yaml`, the latest), read through pyarrow.fs."""
    import pyarrow.fs as pafs

    out = []
    for uri in uris:
        u = str(uri).rstrip("/")
        try:
            fs, base = pafs.FileSystem.from_uri(u if "://" in u else Path(u).resolve().as_uri())
        except (ValueError, OSError):
            continue
        for rel in ("specs/spec.yaml", "spec.yaml"):
            try:
                with fs.open_input_stream(f"{base}/{rel}") as f:
                    out.append((f"{u}/{rel}", f.read().decode()))
                break
            except (FileNotFoundError, OSError):
                pass
        else:
            out.append((u, "(no saved spec found under specs/spec.yaml)"))
    return out


def _versions(a: Analysis) -> pd.DataFrame:
    cols = ["schema_version", "reconent_version", "code_version", "torch_version", "ray_version", "python_version",
            "device"]
    rows = []
    for kind, df in (("probe", a.probes), ("train", a.trains)):
        for c in cols:
            if c in df and len(df):
                rows.append((f"{kind} rows", c, ", ".join(sorted(map(str, df[c].dropna().unique()))) or "–"))
    import matplotlib

    from reconent import __version__

    rows += [("this report", "reconent", __version__), ("this report", "pandas", pd.__version__),
             ("this report", "matplotlib", matplotlib.__version__), ("this report", "python", platform.python_version())]
    return pd.DataFrame(rows, columns=["where", "what", "version"])


def boundary_display(a: Analysis) -> pd.DataFrame:
    b = a.boundaries.sort_values(["arch", "sigma_b2", "sigma_w2"])
    rng = lambda lo, hi: "–" if pd.isna(lo) else (f"{lo:g}" if lo == hi else f"{lo:g} … {'∞' if np.isinf(hi) else f'{hi:g}'}")  # noqa: E731
    return pd.DataFrame({
        "group": [group_label(tuple(r)) for r in b[figures.GROUP].itertuples(index=False)],
        "σ_w²": b["sigma_w2"], "predicted L*": [rng(lo, hi) for lo, hi in zip(b["pred_lo"], b["pred_hi"])],
        "95% CI (seeds)": [("–" if pd.isna(x) else f"{x:g} … {y:g}") for x, y in zip(b["ci_lo"], b["ci_hi"])],
        "true L* (trained grid)": [rng(lo, hi) for lo, hi in zip(b["true_lo"], b["true_hi"])],
        "theory 6·ξ_c": b["theory_depth"], "|pred − true| (depth)": b["distance_depth"],
        "|pred − true| (log-depth)": b["distance_log_depth"]})


def _agreement_html(a: Analysis) -> str:
    s, iv = a.scores, a.intervals
    conf = pd.DataFrame([["predicted trainable", s["tp"], s["fp"]], ["predicted untrainable", s["fn"], s["tn"]]],
                        columns=["", "trained: trainable", "trained: untrainable"])
    keys = ["precision", "recall", "f1", "balanced_accuracy", "accuracy", "boundary_distance_depth",
            "boundary_distance_log_depth"]
    met = pd.DataFrame({"metric": keys, "value": [s[k] for k in keys],
                        "95% bootstrap interval over seeds": [
                            f"{_fmt(iv[k][0])} … {_fmt(iv[k][1])}" if k in iv else "– (one training seed)" for k in keys]})
    return (f"<p>{s['n_scored']} training trials scored (covered by a prediction and with a known verdict); "
            f"boundary distances averaged over {s['n_boundary_sigma_w2']} σ_w² values.</p>"
            + _table(conf) + _table(met))


def _explain_html(dirs) -> str:
    """The figures of `reconent explain` runs (their manifest.json), embedded like the report's own."""
    from ..explain import figures as explain_figures

    parts = []
    for d in dirs:
        try:
            figs = explain_figures(d)
        except (OSError, ValueError) as e:
            raise AnalysisError(f"--explain {d}: not a `reconent explain` output folder ({e}); "
                                f"run `reconent explain mlp -o {d}` first") from None
        parts += [f"<p class='muted'>{html.escape(f['title'])}</p>" + _img(Path(f["path"]), f["title"]) for f in figs]
    return "".join(parts)


def write_report(a: Analysis, out_dir, uris=(), title: str | None = None, explain=()) -> dict:
    """Write report.html (self-contained), the PNG figures and summary.json into out_dir; returns the summary.

    `explain`: folders written by `reconent explain`, shown in an extra "Interpretability" section."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs: dict[str, list[tuple[Path, str]]] = {"phase": [], "boundary": [], "curves": []}
    makers = {"phase": figures.phase_figure, "boundary": figures.boundary_figure, "curves": figures.curves_figure}
    for i, key in enumerate(a.groups()):
        suffix = "" if i == 0 else f"_{i + 1}"
        for name, make in makers.items():
            path = out / f"{name}{suffix}.png"
            if make(a, key, path):
                figs[name].append((path, f"{name}: {group_label(key)}"))
    summary = dict(a.summary(), uris=[str(u) for u in uris],
                   sweeps=sorted(set(map(str, pd.concat([a.probes.get("sweep", pd.Series(dtype=str)),
                                                         a.trains.get("sweep", pd.Series(dtype=str))]).dropna()))),
                   figures=[p.name for v in figs.values() for p, _ in v], report="report.html")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")

    s = summary
    head = pd.DataFrame({"quantity": HEADLINE, "value": [
        _fmt(s[k]) if not isinstance(s[k], list) else ", ".join(map(_fmt, s[k])) for k in HEADLINE]})
    none = "<p class='muted'>Nothing to show (see the notes in the summary).</p>"
    imgs = lambda name: "".join(_img(p, alt) for p, alt in figs[name]) or none  # noqa: E731
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in a.notes) or "<li>none</li>"
    specs = "".join(f"<p class='muted'>{html.escape(src)}</p><pre>{html.escape(text)}</pre>"
                    for src, text in _spec_texts(uris)) or none
    title = title or f"reconent report: {', '.join(s['sweeps']) or 'results'}"
    sections = SECTIONS + (["Interpretability"] if explain else [])
    body = {
        "Interpretability": _explain_html(explain) if explain else "",
        "Summary": f"{_table(head)}<p><b>Notes</b></p><ul class='notes'>{notes}</ul>",
        "Phase diagram": "<p>Entropy of the deepest probe per σ_w² (median over seeds) at each layer, with the "
                         "predicted boundary, the trained points, 6·ξ_c and the critical σ_w².</p>" + imgs("phase"),
        "Boundaries": imgs("boundary") + (_table(boundary_display(a)) if len(a.boundaries) else none),
        "Entropy vs depth": imgs("curves"),
        "Agreement": _agreement_html(a) if s["n_scored"] else none,
        "Cost": "<p>Compute-seconds of the probes against the training trials. <i>points both cover</i>: the "
                "scored trials and the probes their predictions read.</p>" + _table(a.cost),
        "Method": METHOD,
        "Sweep spec": specs,
        "Versions": _table(_versions(a)),
    }
    rule = (f"rtol = {_fmt(s['rtol']) if not isinstance(s['rtol'], list) else s['rtol']}, "
            f"threshold = {_fmt(s['threshold']) if not isinstance(s['threshold'], list) else s['threshold']}")
    doc = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
           f"<p class='muted'>{html.escape(', '.join(map(str, uris)))} · {rule} · generated "
           f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}</p><nav>"
           + " · ".join(f"<a href='#s{i}'>{n}</a>" for i, n in enumerate(sections)) + "</nav>"
           + "".join(f"<h2 id='s{i}'>{n}</h2>{body[n]}" for i, n in enumerate(sections)) + "</body></html>")
    (out / "report.html").write_text(doc, encoding="utf-8")
    return summary


def report(uris, out_dir, rtol: float | None = None, threshold: float | None = None, n_boot: int = 1000,
           explain=()) -> dict:
    """Load one or several sweeps (`<storage>/<sweep name>` each), analyse and write the report."""
    uris = [uris] if isinstance(uris, (str, Path)) else list(uris)
    got = {k: [] for k in ("probe", "train")}
    for u in map(str, uris):  # one at a time, so a mistyped URI among several is named, not skipped
        rows = {k: load(u, k) for k in got}
        if not any(len(f) for f in rows.values()):
            raise AnalysisError(f"no results under {u} (looked for {u}/probe and {u}/train parts)")
        for k, f in rows.items():
            got[k].append(f)
    probes, trains = (pd.concat([f for f in got[k] if len(f)] or [pd.DataFrame()], ignore_index=True)
                      for k in ("probe", "train"))
    return write_report(analyse(probes, trains, rtol, threshold, n_boot=n_boot), out_dir, uris, explain=explain)


def cmd_report(a) -> None:
    s = report(a.results, a.out, a.rtol, a.threshold, a.n_boot, explain=a.explain)
    if a.json:
        print(json.dumps(s))
        return
    f = lambda k: _fmt(s[k]) if not isinstance(s[k], list) else s[k]  # noqa: E731
    print(f"{s['n_probe_points']} probes, {s['n_train_points']} training trials, {s['n_scored']} scored "
          f"(rtol {f('rtol')}, threshold {f('threshold')})")
    print(f"precision {f('precision')}  recall {f('recall')}  F1 {f('f1')}  balanced accuracy "
          f"{f('balanced_accuracy')}  boundary distance {f('boundary_distance_depth')} layers")
    print(f"probe {f('probe_seconds')} s vs training {f('train_seconds')} s on the points both cover "
          f"(saving x{f('saving_factor')})")
    for n in s["notes"]:
        print(f"note: {n}")
    print(f"wrote {Path(a.out) / 'report.html'}, summary.json and {len(s['figures'])} PNG figures")


def register(sub, bench) -> None:
    from ..cli import nonneg, pos_float, _num

    r = sub.add_parser("report", help="analyse sweep results: boundaries, agreement, cost; HTML + PNG + JSON")
    r.add_argument("results", nargs="+", metavar="RESULTS_URI",
                   help="a sweep's results folder, <storage>/<sweep name> (local path, s3://, gs://); several allowed")
    r.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder for report.html, PNGs, summary.json")
    r.add_argument("--rtol", type=pos_float, default=None, help="cutoff tolerance (default: each probe's stored rtol)")
    r.add_argument("--threshold", type=nonneg, default=None,
                   help="accuracy threshold in [0, 1] (default: each trial's stored threshold)")
    r.add_argument("--n-boot", type=_num(int, 0), default=1000, help="bootstrap resamples over seeds (0: none)")
    r.add_argument("--explain", action="append", default=[], metavar="DIR",
                   help="also embed the figures of a `reconent explain` output folder (repeatable)")
    r.add_argument("--json", action="store_true", help="print summary.json's content as one JSON object")
    r.set_defaults(func=cmd_report)
