"""The boundary search against the 40-point grid at the same honest budgets, from the stored rows only.

    python analysis/boundary_mnist5k/honest/compare.py analysis/boundary_mnist5k/data [--epochs 20] [--out DIR]

DATA holds the two sweeps (search.yaml's `boundary_honest`, grid.yaml's `boundary_honest_grid`). Printed, and written
to DIR (default: out/ beside this script) as compare.json and compare.md:
- per σ_w²: the probes' predicted L*, and the true L* of each study as a bracket lower … upper (`upper` the first
  untrainable depth, `lower` the deepest trainable one below it; analysis.true_boundary_by_epochs), its width
  upper - lower (the candidate depths for the deepest trainable one), and whether the two brackets overlap;
- per study: trainings, training-seconds, layer-epochs (depth × epochs run: the cost the machine's load does not
  change), runs stopped early, median bracket width, and the probe's agreement with the
  trained verdicts (precision, recall, F1, accuracy over the scored trainings; analysis.analyse, the same probes for
  both);
- the issue's goal as two ratios: search seconds / grid seconds (goal <= 0.5) and the search's median bracket width /
  the grid's (goal <= 1/3), the medians over the columns both bracket;
- the search after its first k trainings (in the order they started): seconds and median width, so one run shows
  which budget would have met the goal.
Verdicts are anytime verdicts at `--epochs` (default: the largest stored) and `--threshold` (default: the stored one).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from reconent import analysis
from reconent.analysis.agreement import round_sigma

HERE = Path(__file__).resolve().parent
SEARCH, GRID = "boundary_honest", "boundary_honest_grid"
GOAL_SECONDS, GOAL_WIDTH = 0.5, 1 / 3


class NoRows(ValueError):
    """A study has nothing stored yet (one line, exit 2)."""


def brackets(trains: pd.DataFrame, threshold, epochs: int) -> dict[float, dict]:
    """{σ_w²: {lower, upper, censored, predicted, width}} at this budget (width inf when censored)."""
    out = {}
    for r in analysis.true_boundary_by_epochs(trains, threshold, [epochs]):
        w = math.inf if r["upper"] is None else r["upper"] - r["lower"]
        out[r["sigma_w2"]] = {**{k: r[k] for k in ("lower", "upper", "censored", "predicted")}, "width": w}
    return out


def median_width(br: dict, columns=None) -> float:
    w = [b["width"] for s, b in br.items() if (columns is None or s in columns) and math.isfinite(b["width"])]
    return float(np.median(w)) if w else math.nan


def finite(br: dict) -> set:
    return {s for s, b in br.items() if math.isfinite(b["width"])}


def overlap(a: dict | None, b: dict | None):
    """Whether the two brackets' candidate ranges [lower, upper - 1] meet (None when a column lacks one)."""
    if a is None or b is None:
        return None
    top = lambda x: math.inf if x["upper"] is None else x["upper"] - 1  # noqa: E731
    return bool(max(a["lower"], b["lower"]) <= min(top(a), top(b)))


def ok_rows(t: pd.DataFrame) -> pd.DataFrame:
    return t[~t["status"].eq("error")] if len(t) else t


def study(probes: pd.DataFrame, trains: pd.DataFrame, threshold, epochs: int) -> dict:
    """Trainings, seconds, brackets and the probe's agreement of one study's training rows."""
    t = ok_rows(trains)
    a = analysis.analyse(probes if len(probes) else None, t, threshold=threshold, epochs=epochs, n_boot=0)
    s = a.scores
    stopped = t["stopped_early"].eq(True) if "stopped_early" in t else pd.Series(False, index=t.index)
    return {"trainings": int(len(t)), "training_seconds": float(t["seconds"].sum()),
            "stopped_early": int(stopped.sum()), "epochs_run": int(t["epochs_run"].sum()),
            # seconds depend on the machine's load; depth x epochs run is the same cost without it
            "layer_epochs": int((t["depth"] * t["epochs_run"]).sum()),
            "brackets": brackets(t, threshold, epochs),
            "violations": {round_sigma(w): int(v) for w, v in zip(a.boundaries["sigma_w2"],
                                                                  a.boundaries["n_violations"].fillna(0))},
            "probe_agreement": {k: s[k] for k in ("n_scored", "tp", "fp", "fn", "tn", "precision", "recall", "f1",
                                                  "accuracy")},
            "predicted": {round_sigma(w): lo for w, lo in zip(a.boundaries["sigma_w2"], a.boundaries["pred_lo"])},
            "budgets": {k: a.budgets[k] for k in ("probe_steps", "probe_depth", "epochs", "threshold")},
            "notes": a.notes}


def prefixes(trains: pd.DataFrame, threshold, epochs: int, grid: dict, step: int = 4) -> list[dict]:
    """The search after its first k trainings (by start time): k, seconds, median width over the columns the grid
    brackets too, and both ratios."""
    t = ok_rows(trains).sort_values(["started_at", "point_id"], kind="stable").reset_index(drop=True)
    n, out = len(t), []
    ks = sorted({k for k in range(step, n, step)} | {n}) if n else []
    for k in ks:
        br = brackets(t.iloc[:k], threshold, epochs)
        cols = finite(br) & finite(grid["brackets"])
        w, gw = median_width(br, cols), median_width(grid["brackets"], cols)
        sec = float(t["seconds"].iloc[:k].sum())
        out.append({"trainings": k, "training_seconds": sec, "columns_both_bracket": len(cols), "median_width": w,
                    "seconds_ratio": _ratio(sec, grid["training_seconds"]), "width_ratio": _ratio(w, gw)})
    return out


def _ratio(a, b):
    return a / b if b and math.isfinite(a) and math.isfinite(b) else math.nan


def load_log(path: Path, trains: pd.DataFrame) -> dict | None:
    """The 1-minute load average logged by run_honest.sh while these rows ran: median, min, max (None without a
    log). Rows resumed over several sessions read every sample between the first start and the last finish."""
    if not path.exists() or not len(trains) or "started_at" not in trains:
        return None
    log = pd.read_csv(path, sep=" ", header=None, usecols=[0, 1], names=["t", "load1"])
    log["t"] = pd.to_datetime(log["t"], utc=True)
    t0, t1 = pd.to_datetime(trains["started_at"], utc=True).min(), pd.to_datetime(trains["finished_at"], utc=True).max()
    pad = pd.Timedelta(seconds=60)  # one logging interval: a short run still gets its neighbouring samples
    x = log[(log["t"] >= t0 - pad) & (log["t"] <= t1 + pad)]["load1"]
    return None if not len(x) else {"median": float(x.median()), "min": float(x.min()), "max": float(x.max()),
                                    "samples": int(len(x))}


def compare(data: Path, epochs: int | None = None, threshold: float | None = None, step: int = 4,
            load_path: Path | None = None) -> dict:
    probes = analysis.load(data / SEARCH, "probe")
    ts, tg = analysis.load(data / SEARCH, "train"), analysis.load(data / GRID, "train")
    if not len(ts) or not len(tg):
        missing = [n for n, t in ((SEARCH, ts), (GRID, tg)) if not len(t)]
        raise NoRows(f"no training rows for {', '.join(missing)} under {data}; run run_honest.sh first")
    E = epochs or analysis.default_epochs(pd.concat([ts, tg]))
    s, g = study(probes, ts, threshold, E), study(probes, tg, threshold, E)
    cols = finite(s["brackets"]) & finite(g["brackets"])
    sw, gw = median_width(s["brackets"], cols), median_width(g["brackets"], cols)
    ratios = {"seconds_ratio": _ratio(s["training_seconds"], g["training_seconds"]), "width_ratio": _ratio(sw, gw),
              "layer_epochs_ratio": _ratio(s["layer_epochs"], g["layer_epochs"]),
              "search_median_width": sw, "grid_median_width": gw, "columns_both_bracket": len(cols)}
    ratios["goal_met"] = bool(ratios["seconds_ratio"] <= GOAL_SECONDS and ratios["width_ratio"] <= GOAL_WIDTH)
    sigmas = sorted(set(s["brackets"]) | set(g["brackets"]) | set(s["predicted"]))
    counts = ok_rows(ts).assign(sw=lambda d: d["sigma_w2"].map(round_sigma))["sw"].value_counts()
    columns = [{"sigma_w2": w, "predicted": s["predicted"].get(w), "grid": g["brackets"].get(w),
                "search": s["brackets"].get(w), "search_trainings": int(counts.get(w, 0)),
                "agree": overlap(g["brackets"].get(w), s["brackets"].get(w))} for w in sigmas]
    out = {"data": str(data), "epochs": int(E), "threshold": s["budgets"]["threshold"], "search": s, "grid": g,
           "columns": columns, "ratios": ratios, "goal": {"seconds_ratio": GOAL_SECONDS, "width_ratio": GOAL_WIDTH},
           "prefixes": prefixes(ts, threshold, E, g, step)}
    if load_path is not None:
        out["load"] = {"search": load_log(load_path, ts), "grid": load_log(load_path, tg)}
    return out


def _f(x, nd=0):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return f"{x:,.{nd}f}"


def _br(b):
    if b is None:
        return "–"
    lo, up = int(b["lower"]), b["upper"]
    if up is None:
        return f"≥ {lo}"
    text = f"< {int(up)}" if lo == 0 else f"{lo} … {int(up) - 1}"
    return text + (" (predicted)" if b["predicted"] else "")


def markdown(r: dict) -> str:
    s, g, q = r["search"], r["grid"], r["ratios"]
    lines = [f"Verdicts at {r['epochs']} epochs, test accuracy > {r['threshold']}; probes at "
             f"{s['budgets']['probe_steps']} decoder steps, depth {s['budgets']['probe_depth']}. Brackets: the deepest "
             f"trainable depth lies in `a … b` (`< d`: the shallowest trained depth d failed; `≥ d`: every trained "
             f"depth passed); width = candidate depths.", "",
             "| σ_w² | predicted L* (probes) | grid bracket | width | search bracket | width | search trainings | "
             "overlap |", "|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for c in r["columns"]:
        gb, sb = c["grid"], c["search"]
        lines.append(f"| {c['sigma_w2']:g} | {_f(c['predicted'], 1)} | {_br(gb)} | {_f(gb and gb['width'])} | "
                     f"{_br(sb)} | {_f(sb and sb['width'])} | {c['search_trainings']} | "
                     f"{'–' if c['agree'] is None else 'yes' if c['agree'] else 'NO'} |")
    pa, ga = s["probe_agreement"], g["probe_agreement"]
    lines += ["", "| | grid | search |", "|---|---:|---:|",
              f"| trainings | {g['trainings']} | {s['trainings']} |",
              f"| training-seconds | {_f(g['training_seconds'])} | {_f(s['training_seconds'])} |",
              f"| epochs run | {g['epochs_run']} | {s['epochs_run']} |",
              f"| layer-epochs (depth × epochs run: the cost without the load) | {_f(g['layer_epochs'])} | "
              f"{_f(s['layer_epochs'])} |",
              f"| stopped early (stop rule) | {g['stopped_early']} | {s['stopped_early']} |",
              f"| median bracket width, columns both bracket ({q['columns_both_bracket']}) | "
              f"{_f(q['grid_median_width'], 1)} | {_f(q['search_median_width'], 1)} |",
              f"| median bracket width, own bracketed columns | {_f(median_width(g['brackets']), 1)} | "
              f"{_f(median_width(s['brackets']), 1)} |",
              f"| trainable depths above an untrainable one | {sum(g['violations'].values())} | "
              f"{sum(s['violations'].values())} |",
              f"| probe vs training: scored | {ga['n_scored']} | {pa['n_scored']} |",
              f"| probe precision / recall / F1 / accuracy | {_f(ga['precision'], 2)} / {_f(ga['recall'], 2)} / "
              f"{_f(ga['f1'], 2)} / {_f(ga['accuracy'], 2)} | {_f(pa['precision'], 2)} / {_f(pa['recall'], 2)} / "
              f"{_f(pa['f1'], 2)} / {_f(pa['accuracy'], 2)} |"]
    if r.get("load"):
        lines.append("| load average (1 min) median (min … max) | " + " | ".join(
            "–" if x is None else f"{x['median']:.1f} ({x['min']:.1f} … {x['max']:.1f})"
            for x in (r["load"]["grid"], r["load"]["search"])) + " |")
    lines += ["", f"- search seconds / grid seconds = {_f(q['seconds_ratio'], 2)} (goal ≤ {GOAL_SECONDS}); "
              f"layer-epochs: {_f(q['layer_epochs_ratio'], 2)}",
              f"- search median width / grid median width = {_f(q['width_ratio'], 2)} (goal ≤ {GOAL_WIDTH:.2f})",
              f"- goal met: {'yes' if q['goal_met'] else 'no'}", "",
              "The search after its first k trainings (by start):", "",
              "| k | training-seconds | seconds / grid | median width (columns both bracket) | width / grid |",
              "|---:|---:|---:|---:|---:|"]
    for p in r["prefixes"]:
        lines.append(f"| {p['trainings']} | {_f(p['training_seconds'])} | {_f(p['seconds_ratio'], 2)} | "
                     f"{_f(p['median_width'], 1)} ({p['columns_both_bracket']}) | {_f(p['width_ratio'], 2)} |")
    return "\n".join(lines) + "\n"


def _json(x):
    if isinstance(x, dict):
        return {str(k): _json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(x) else float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="the storage folder holding both sweeps")
    ap.add_argument("--epochs", type=int, default=None, help="epoch budget of the verdicts (default: largest stored)")
    ap.add_argument("--threshold", type=float, default=None, help="accuracy threshold (default: the stored one)")
    ap.add_argument("--step", type=int, default=4, help="the search's prefixes every STEP trainings")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--load-log", type=Path, default=HERE / "load.log")
    a = ap.parse_args(argv)
    if not a.data.is_dir():
        print(f"compare.py: error: {a.data} is not a folder (give the storage folder holding {SEARCH} and {GRID})",
              file=sys.stderr)
        return 2
    try:
        raw = compare(a.data, a.epochs, a.threshold, a.step, a.load_log)
    except (NoRows, analysis.AnalysisError) as e:
        print(f"compare.py: error: {e}", file=sys.stderr)
        return 2
    md, r = markdown(raw), _json(raw)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "compare.json").write_text(json.dumps(r, indent=1, ensure_ascii=False) + "\n")
    (a.out / "compare.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
