"""Replay a stop rule offline over stored full-budget accuracy curves: which verdicts it would flip, and how
many epochs it would save (issue 17; the rule is reconent.science.budget.Extrapolate, docs/budgets.md).

One command, on any directory of training results (a storage root with sweeps under it, or one sweep):

    PYTHONPATH=. python analysis/stop_rule/replay.py analysis/budgets/data \
        analysis/boundary_mnist5k/data/boundary_honest_stopcheck analysis/boundary_mnist5k/data/boundary_honest \
        analysis/boundary_mnist5k/data/boundary_honest_grid \
        --out analysis/stop_rule/out --epochs 100 50 20

Options: --epochs 50 100 200 replays at those budgets (a curve that ran E epochs speaks for every budget up to E);
default each row's own budget. --threshold T replays at another threshold (default each row's own).
--patience/--flat-patience/--rise/--safety/--margin/--window/--min-epochs change the rule's constants (to tune it;
the defaults are `train.stop: extrapolate`).

What counts, per (row, budget E):
- a run that passed the threshold by epoch E is *trainable*; the rule could only have stopped it before it passed,
  which is a *flip* (trainable observed, untrainable predicted). A flip's distance from the boundary is measured
  against the column's shallowest untrainable run at E (any seed; its (group, σ_w²)):
  `layers_below_first_untrainable`; "far" means more than max(2, 10% of that depth) layers.
- a run that ran E epochs without passing is *untrainable*; the rule saves the epochs after its stop.
- shorter curves that did not pass (stopped at a lower threshold, or a smaller budget) and diverged runs are left
  out (they say nothing about E). Rows already stopped by a rule are left out too: their curve is not full.
- rows already stopped by `extrapolate` are *audited* instead: does the rule, as it is now, stop their stored curve
  at the same epoch? A stored verdict the current rule would not reach is listed (`audit` in summary.json); the
  bound it records is the one the rule had when the row was written (its `code_version`).
Goals (issue 17): flips <= 2% of the runs, none far from the boundary; >= 50% of the untrainable runs' epochs saved.

Writes `<out>/summary.json` (the figures, per budget) and `<out>/flips.csv` (every flipped run), and prints both.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from reconent.analysis import frames
from reconent.analysis.boundary import boundary_keys
from reconent.science.budget import Extrapolate, replay
from reconent.sweep import results

FAR_LAYERS, FAR_FRACTION = 2, 0.10  # a flip further below the boundary than max(2, 10%) layers is "far"


def curves(rows: pd.DataFrame) -> pd.DataFrame:
    """The replayable rows: finished ('ok'), with a per-epoch curve, not stopped by a rule already."""
    ok = rows[rows["status"].eq("ok") & rows["accuracy"].notna()].copy()
    if "stopped_early" in ok:
        ok = ok[~ok["stopped_early"].eq(True)]
    ok["accuracy"] = ok["accuracy"].map(lambda a: [float(x) for x in a])
    # the same network trained twice (a study's run and its rerun without the rule): the longer curve speaks once
    same = boundary_keys() + ["depth", "seed", "epochs", "threshold", "lr", "batch_size", "train_samples"]
    ok = ok.assign(_n=ok["accuracy"].map(len)).sort_values("_n", ascending=False, kind="stable")
    ok = ok.drop_duplicates([c for c in same if c in ok], keep="first").drop(columns="_n")
    return frames.numeric_sizes(ok).reset_index(drop=True)


def replay_rows(rows: pd.DataFrame, rule, epochs: int | None = None, threshold: float | None = None) -> pd.DataFrame:
    """One record per replayable row at budget `epochs` (None: the row's own) and `threshold` (None: its own):
    observed verdict (True/False; rows that cannot speak for E are dropped), where the rule stops (NaN: never),
    and the epochs the run took and would take."""
    out = []
    for r in rows.itertuples(index=False):
        E = int(r.epochs) if epochs is None else int(epochs)
        thr = float(r.threshold) if threshold is None else float(threshold)
        acc = r.accuracy[:E]
        first = next((i + 1 for i, a in enumerate(acc) if a > thr), None)
        if first is None and len(acc) < E:
            continue  # never saw epoch E: it says nothing about this budget
        stop = replay(acc, E, thr, rule)
        ran = first if first is not None else E
        out.append({**{k: getattr(r, k) for k in boundary_keys() + ["depth", "seed", "point_id"]}, "epochs_used": E,
                    "threshold_used": thr, "trainable": first is not None, "passed_at": first,
                    "stop_epoch": None if stop is None else stop["epoch"],
                    "stop_bound": None if stop is None else stop["bound"],
                    "epochs_full": ran, "epochs_with_rule": ran if stop is None else stop["epoch"]})
    return pd.DataFrame(out)


def audit(rows: pd.DataFrame, rule) -> dict:
    """Rows a rule already stopped (`stop: extrapolate`): does `rule` stop their stored curve at the same epoch?"""
    if "stopped_early" not in rows:
        return {"stopped": 0, "reproduced": 0, "differs": []}
    st = rows[rows["stopped_early"].eq(True) & rows["stop"].eq("extrapolate") & rows["status"].eq("ok")]
    differs = []
    for r in st.itertuples(index=False):
        acc = [float(x) for x in r.accuracy]
        s = replay(acc, int(r.epochs), float(r.threshold), rule)
        if s is None or s["epoch"] != len(acc):
            differs.append({"sweep": r.sweep, "sigma_w2": float(r.sigma_w2), "depth": int(r.depth),
                            "seed": int(r.seed), "stopped_at": len(acc), "rule_now": None if s is None else s["epoch"]})
    return {"stopped": int(len(st)), "reproduced": int(len(st) - len(differs)), "differs": differs}


def summarise(rec: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """The figures at one budget, and the flips with their distance from the column's boundary."""
    if not len(rec):
        return {"runs": 0}, pd.DataFrame()
    keys = boundary_keys()
    # the shallowest run of the column that failed, of any seed (two seeds may split at the boundary itself)
    first_bad = rec[~rec["trainable"]].groupby(keys, dropna=False)["depth"].min().rename("first_untrainable")
    first_bad = first_bad.reset_index()
    flips = rec[rec["trainable"] & rec["stop_epoch"].notna()].merge(first_bad, on=keys, how="left")
    flips["layers_below_first_untrainable"] = flips["first_untrainable"] - flips["depth"]
    top = pd.to_numeric(flips["first_untrainable"], errors="coerce").astype(float)
    # no untrainable depth in the column: no boundary near it, so far by definition
    below = flips["layers_below_first_untrainable"]
    flips["far"] = ~np.isfinite(top) | (below > np.maximum(FAR_LAYERS, FAR_FRACTION * top))
    bad = rec[~rec["trainable"]]
    saved_bad = (bad["epochs_full"] - bad["epochs_with_rule"]).sum()
    s = {"epochs": sorted(int(e) for e in rec["epochs_used"].unique()),
         "runs": int(len(rec)), "trainable": int(rec["trainable"].sum()), "untrainable": int(len(bad)),
         "flips": int(len(flips)), "flip_rate": float(len(flips) / len(rec)),
         "flips_far": int(flips["far"].sum()),
         "flips_max_layers_below_boundary": _max(flips["layers_below_first_untrainable"]),
         "untrainable_stopped": int(bad["stop_epoch"].notna().sum()),
         "untrainable_epochs": int(bad["epochs_full"].sum()), "untrainable_epochs_saved": int(saved_bad),
         "untrainable_epochs_saved_fraction": float(saved_bad / bad["epochs_full"].sum()) if len(bad) else None,
         "all_epochs": int(rec["epochs_full"].sum()),
         "all_epochs_saved_fraction": float(1 - rec["epochs_with_rule"].sum() / rec["epochs_full"].sum())}
    s["goals_met"] = bool(s["flip_rate"] <= 0.02 and s["flips_far"] == 0
                          and (s["untrainable_epochs_saved_fraction"] or 0) >= 0.5)
    return s, flips


def _max(v: pd.Series) -> float | None:
    """The largest distance (None: no flip; a column with no untrainable depth gives ∞: far by definition)."""
    v = pd.to_numeric(v, errors="coerce").dropna()
    return float(v.max()) if len(v) else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="+", help="results directories: storage roots or sweeps (Parquet training rows)")
    ap.add_argument("--out", default=None, help="write summary.json and flips.csv here")
    ap.add_argument("--epochs", type=int, nargs="+", default=None, help="budgets to replay at (default: each row's)")
    ap.add_argument("--threshold", type=float, default=None, help="accuracy threshold (default: each row's)")
    d = Extrapolate()
    for k in ("patience", "flat_patience", "rise", "safety", "margin", "window"):
        ap.add_argument(f"--{k.replace('_', '-')}", type=float, default=getattr(d, k),
                        help=f"Extrapolate.{k} (default {getattr(d, k):.3g})")
    ap.add_argument("--min-epochs", type=int, default=d.min_epochs, help=f"default {d.min_epochs}")
    a = ap.parse_args(argv)
    rule = Extrapolate(patience=a.patience, flat_patience=a.flat_patience, rise=a.rise, min_epochs=a.min_epochs,
                       window=a.window, safety=a.safety, margin=a.margin)
    try:
        stored = pd.concat([results.training(d) for d in a.data], ignore_index=True)
    except results.NoResults as e:
        print(f"replay: error: {e}", file=sys.stderr)
        return 2
    rows = curves(stored)
    summary = {"data": [str(d) for d in a.data], "rule": {"name": "extrapolate", **rule.__dict__},
               "audit": audit(stored, rule), "budgets": []}
    au = summary["audit"]
    print(f"audit: {au['stopped']} stored runs stopped by extrapolate; the rule as it is now stops "
          f"{au['reproduced']} of them at the same epoch" + (f"; differs on {au['differs']}" if au["differs"] else ""))
    all_flips = []
    for E in a.epochs or [None]:
        s, flips = summarise(replay_rows(rows, rule, E, a.threshold))
        summary["budgets"].append({"budget": "own" if E is None else E, **s})
        all_flips.append(flips)
        print(f"budget {'each row own' if E is None else E} epochs: {s.get('runs', 0)} runs "
              f"({s.get('trainable', 0)} trainable, {s.get('untrainable', 0)} untrainable); flips {s.get('flips', 0)} "
              f"({100 * s.get('flip_rate', 0):.1f}%, {s.get('flips_far', 0)} far from the boundary); untrainable "
              f"epochs saved {s.get('untrainable_epochs_saved', 0)} of {s.get('untrainable_epochs', 0)} "
              f"({100 * (s.get('untrainable_epochs_saved_fraction') or 0):.0f}%); all epochs saved "
              f"{100 * s.get('all_epochs_saved_fraction', 0):.0f}%; goals met: {s.get('goals_met', False)}")
    flips = pd.concat([f for f in all_flips if len(f)], ignore_index=True) if any(len(f) for f in all_flips) \
        else pd.DataFrame()
    if len(flips):
        cols = boundary_keys() + ["depth", "seed", "epochs_used", "threshold_used", "passed_at", "stop_epoch",
                                  "stop_bound", "first_untrainable", "layers_below_first_untrainable", "far"]
        print("flipped runs:\n" + flips[cols].to_string(index=False))
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=_plain) + "\n")
        flips.to_csv(out / "flips.csv", index=False)
    return 0


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    return None if isinstance(v, float) and math.isnan(v) else str(v)


if __name__ == "__main__":
    sys.exit(main())
