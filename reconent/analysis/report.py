"""`reconent report RESULTS_URI -o DIR`: a self-contained HTML report, its figures as PNG, and summary.json."""
from __future__ import annotations

import base64
import datetime as dt
import json
import platform
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import yaml

from . import figures
from .core import Analysis, analyse, default_epochs, default_probe_steps
from .frames import AnalysisError, group_label, load, probe_budgets

SECTIONS = ["Summary", "Phase diagram", "Boundaries", "Entropy vs depth", "Agreement", "Cost", "Method",
            "Sweep spec", "Versions"]
HEADLINE = ["n_probe_points", "n_train_points", "n_scored", "precision", "recall", "f1", "balanced_accuracy",
            "boundary_distance_depth", "boundary_distance_log_depth", "probe_seconds", "train_seconds",
            "saving_factor", "critical_sigma_w2", "rtol", "threshold", "n_probe_not_converged"]


def _fmt(v, nd=3) -> str:
    """A table cell or summary value as plain text (the template escapes it): floats to `nd` significant digits."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "∞" if isinstance(v, float) and np.isinf(v) and v > 0 else "–"
    if isinstance(v, (float, np.floating)):
        return f"{v:.{nd}g}"
    return str(v)


_ENV = jinja2.Environment(loader=jinja2.PackageLoader("reconent.analysis", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["fmt"] = _fmt


def _img(path: Path, alt: str, caption: str = "") -> dict:
    """A PNG embedded as a data URI (the report opens offline), for the template's `images` macro."""
    return {"src": "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode(), "alt": alt,
            "caption": caption}


def _spec_texts(uris) -> list[tuple[str, str]]:
    """The saved resolved spec of each sweep (`<uri>/specs/spec.yaml`, the latest), read through its Store."""
    from reconent.sweep.store import Store

    out = []
    for uri in uris:
        u = str(uri).rstrip("/")
        try:
            text = Store.at(u).spec_text()
        except (ValueError, OSError):
            text = None
        out.append((f"{u}/specs/spec.yaml", text) if text is not None
                   else (u, "(no saved spec found under specs/spec.yaml)"))
    return out


def spec_budgets(specs, probes: pd.DataFrame | None = None) -> tuple[int | None, int | None]:
    """(decoder steps, training epochs) the saved resolved specs name: `probe.steps`, or where the spec gave
    `probe.epochs` instead, the `steps_run` of the probe rows with that `epochs` setting; and `train.epochs`.
    Several specs naming different budgets: the largest. None where no spec names one. `specs`: _spec_texts."""
    steps, epochs = set(), set()
    for _, text in specs:
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        if not isinstance(d, dict):
            continue
        pr, tr = d.get("probe"), d.get("train")
        if isinstance(pr, dict) and pr.get("enabled", True) is not False:
            if isinstance(pr.get("steps"), int):
                steps.add(pr["steps"])
            elif isinstance(pr.get("epochs"), int) and probes is not None and len(probes) and \
                    {"epochs", "steps_run"} <= set(probes.columns):
                ok = probes[probes["status"].eq("ok")] if "status" in probes else probes
                run = pd.to_numeric(ok.loc[pd.to_numeric(ok["epochs"], errors="coerce") == pr["epochs"], "steps_run"],
                                    errors="coerce").dropna()
                if len(run):
                    steps.add(int(run.max()))
        if isinstance(tr, dict) and tr.get("points", "none") != "none" and isinstance(tr.get("epochs"), int):
            epochs.add(tr["epochs"])
    return (max(steps) if steps else None), (max(epochs) if epochs else None)


def budgets_text(b: dict) -> str:
    """The budgets an analysis read, as the report's first line: "Budgets: probe 938 decoder steps (checkpoints
    58, 234, 938), probe depth 20; training ≤ 5 epochs, threshold 0.6"."""
    many = lambda v: ", ".join(map(_fmt, v)) if isinstance(v, list) else _fmt(v)  # noqa: E731
    S, depth, ck = b.get("probe_steps"), b.get("probe_depth"), b.get("probe_checkpoints") or []
    if depth is None:
        probe = "no probes"
    else:
        probe = (f"probe {S} decoder steps" if S is not None else "probe decoder steps not recorded")
        if ck and ck != [S]:
            probe += f" (checkpoints {', '.join(map(str, ck))})"
        probe += (f", probe depths {many(depth)} (the deepest per σ_w² and seed is read)" if isinstance(depth, list)
                  else f", probe depth {depth}")
    E, thr = b.get("epochs"), b.get("threshold")
    if E is None:
        train = "no training"
    else:
        train = f"training ≤ {E} epochs"
        stored = b.get("train_epochs_stored") or []
        if stored and stored != [E]:
            train += f" (budgets stored: {', '.join(map(str, stored))}; anytime verdicts)"
        if thr is not None:
            train += (f", thresholds {many(thr)} (each trial's own)" if isinstance(thr, list)
                      else f", threshold {many(thr)}")
    src = {"given": "as asked", "spec": "the sweep spec's", "largest": "the largest stored"}
    how = [f"{w}: {src[b[k]]}" for k, w in (("probe_steps_source", "decoder steps"), ("epochs_source", "epochs"))
           if b.get(k) in ("spec", "largest") and b.get(k.replace("_source", "")) is not None]
    return f"Budgets: {probe}; {train}" + (f" [{'; '.join(how)}]" if how else "")


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
        "group": [group_label(tuple(r)) for r in b[figures.group_keys()].itertuples(index=False)],
        "σ_w²": b["sigma_w2"], "predicted L*": [rng(lo, hi) for lo, hi in zip(b["pred_lo"], b["pred_hi"])],
        "probe converged": [_converged(k, n) for k, n in zip(b["n_converged_known"], b["n_not_converged"])],
        "95% CI (seeds)": [("–" if pd.isna(x) else f"{x:g} … {y:g}") for x, y in zip(b["ci_lo"], b["ci_hi"])],
        # "(predicted)": the first untrainable depth is a run the stop rule ended, not one that ran its budget
        "true L* (trained depths)": [rng(lo, hi) + (" (predicted)" if pd.notna(p) and bool(p) else "")
                                     for lo, hi, p in zip(b["true_lo"], b["true_hi"], b["upper_predicted"])],
        "trained depths": b["n_depths"],
        "model L* (80% interval)": [("–" if pd.isna(m) else f"{m:g} ({lo:g} … {hi:g})")
                                    for m, lo, hi in zip(b["post_median"], b["post_lo"], b["post_hi"])],
        "theory 6·ξ_c": b["theory_depth"], "|pred − true| (depth)": b["distance_depth"],
        "|pred − true| (log-depth)": b["distance_log_depth"]})


def _converged(known, bad) -> str:
    """A boundary-table cell: did the seeds' cutoffs stay put between the last two checkpoints?"""
    if pd.isna(known) or not known:
        return "–"
    return "yes" if not bad else f"NOT converged ({int(bad)} of {int(known)} seed{'s' if known > 1 else ''})"


def _agreement(a: Analysis) -> dict:
    s, iv = a.scores, a.intervals
    conf = pd.DataFrame([["predicted trainable", s["tp"], s["fp"]], ["predicted untrainable", s["fn"], s["tn"]]],
                        columns=["", "trained: trainable", "trained: untrainable"])
    keys = ["precision", "recall", "f1", "balanced_accuracy", "accuracy", "boundary_distance_depth",
            "boundary_distance_log_depth"]
    met = pd.DataFrame({"metric": keys, "value": [s[k] for k in keys],
                        "95% bootstrap interval over seeds": [
                            f"{_fmt(iv[k][0])} … {_fmt(iv[k][1])}" if k in iv else "– (one training seed)" for k in keys]})
    return {"n_scored": s["n_scored"], "n_sigma_w2": s["n_boundary_sigma_w2"], "confusion": conf, "metrics": met}


def _explain_figures(figs) -> list[dict]:
    """Figures of `reconent explain` runs ({"path", "title"}; the caller reads them with reconent.explain.figures,
    so the analysis does not import explain), embedded like the report's own."""
    return [_img(Path(f["path"]), f["title"], f["title"]) for f in figs]


def write_report(a: Analysis, out_dir, uris=(), title: str | None = None, explain=()) -> dict:
    """Write report.html (self-contained), the PNG figures and summary.json into out_dir; returns the summary.

    `explain`: figures of `reconent explain` runs ({"path", "title"}, as reconent.explain.figures lists them),
    shown in an extra "Interpretability" section."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs: dict[str, list[tuple[Path, str]]] = {"phase": [], "boundary": [], "budgets": [], "curves": [],
                                               "search": []}
    makers = {"phase": figures.phase_figure, "boundary": figures.boundary_figure,
              "budgets": figures.budgets_figure, "curves": figures.curves_figure, "search": figures.search_figure}
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
    rule = (f"rtol = {_fmt(s['rtol']) if not isinstance(s['rtol'], list) else s['rtol']}, "
            f"threshold = {_fmt(s['threshold']) if not isinstance(s['threshold'], list) else s['threshold']}")
    doc = _ENV.get_template("report.html.j2").render(
        title=title or f"reconent report: {', '.join(s['sweeps']) or 'results'}",
        uris=[str(u) for u in uris], rule=rule, budgets=budgets_text(s["budgets"]),
        n_not_converged=s["n_probe_not_converged"],
        generated=f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
        sections=SECTIONS + (["Interpretability"] if explain else []),
        headline=head, notes=a.notes,
        figures={k: [_img(p, alt) for p, alt in v] for k, v in figs.items()},
        boundaries=boundary_display(a) if len(a.boundaries) else None,
        agreement=_agreement(a) if s["n_scored"] else None,
        cost=a.cost, resolution=a.resolution if a.resolution is not None and len(a.resolution) else None,
        specs=_spec_texts(uris), versions=_versions(a),
        explain=_explain_figures(explain) if explain else [])
    (out / "report.html").write_text(doc, encoding="utf-8")
    return summary


def report(uris, out_dir, rtol: float | None = None, threshold: float | None = None, n_boot: int = 1000,
           explain=(), steps: int | None = None, epochs: int | None = None) -> dict:
    """Load one or several sweeps (`<storage>/<sweep name>` each), analyse and write the report.

    `steps` (decoder steps) / `epochs` (training epochs): the budgets to read; None: the ones the sweeps' saved
    specs name (specs/spec.yaml), else the largest stored. Rows at other budgets are left out with a note."""
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
    S, E, src, notes = _default_budgets(uris, probes, trains, steps, epochs)
    a = analyse(probes, trains, rtol, threshold, n_boot=n_boot, probe_steps=S, epochs=E)
    a.budgets.update(src)
    a.notes[:0] = notes
    return write_report(a, out_dir, uris, explain=explain)


def _default_budgets(uris, probes, trains, steps, epochs):
    """The budgets to read: given, else the spec's (when rows exist at it), else the largest stored."""
    spec_S, spec_E = spec_budgets(_spec_texts(uris), probes) if steps is None or epochs is None else (None, None)
    notes, src = [], {"probe_steps_source": "given", "epochs_source": "given"}
    if steps is None:
        stored = probe_budgets(probes)
        if spec_S is not None and spec_S in stored["checkpoints"]:
            steps, src["probe_steps_source"] = spec_S, "spec"
        else:
            steps, src["probe_steps_source"] = default_probe_steps(probes), "largest"
            if spec_S is not None and steps is not None:
                notes.append(f"the sweep spec names {spec_S} decoder steps but no probe can be read there: the report "
                             f"uses the largest stored, {steps}")
    if epochs is None:
        largest = default_epochs(trains)
        if spec_E is not None and largest is not None and spec_E <= largest:
            epochs, src["epochs_source"] = spec_E, "spec"
        else:
            epochs, src["epochs_source"] = largest, "largest"
            if spec_E is not None and largest is not None:
                notes.append(f"the sweep spec names {spec_E} training epochs but the longest stored budget is "
                             f"{largest}: the report uses {largest}")
    return steps, epochs, src, notes


def summary_text(s: dict, out_dir) -> str:
    """The summary of `report()` as the few lines `reconent report` prints (without --json)."""
    f = lambda k: _fmt(s[k]) if not isinstance(s[k], list) else s[k]  # noqa: E731
    return "\n".join([
        budgets_text(s["budgets"]),
        f"{s['n_probe_points']} probes, {s['n_train_points']} training trials, {s['n_scored']} scored "
        f"(rtol {f('rtol')}, threshold {f('threshold')})",
        f"precision {f('precision')}  recall {f('recall')}  F1 {f('f1')}  balanced accuracy "
        f"{f('balanced_accuracy')}  boundary distance {f('boundary_distance_depth')} layers",
        f"probe {f('probe_seconds')} s vs training {f('train_seconds')} s on the points both cover "
        f"(saving x{f('saving_factor')})",
        *(f"note: {n}" for n in s["notes"]),
        f"wrote {Path(out_dir) / 'report.html'}, summary.json and {len(s['figures'])} PNG figures"])
