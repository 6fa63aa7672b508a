"""The honest-budget study's compute, estimated before it runs (no training: seconds to run).

The grid's cost is a sum over its 40 points; the search's depends on where it trains, so it is simulated: the real
boundary search (reconent.sweep.search.boundary.BoundarySearch, the code the sweep runs) is driven by a synthetic
oracle with this study's assumed boundaries and costs, two trainings at a time as the sweep runs them.

Assumptions (each a guess from measured numbers; they are printed with the estimate):
- seconds = S · depth · epochs run, with S the median seconds per layer-epoch of the stored 100-epoch trainings of
  analysis/budgets/data (one thread, 2-core VM under load); `--s-per-layer-epoch` overrides it;
- L* per column at the epoch budget: measured where the budgets study trained the column (σ_w² 1.2, 4, 8; the
  middle of its bracket, or its censored end), otherwise ASSUMED_L below;
- a trainable run passes after 10 + (E - 10)·(d/L*)² epochs (the budgets study: shallow networks need 9-17 epochs to
  pass 0.8, one at its boundary nearly the whole budget); an untrainable one is ended by `train.stop: extrapolate`
  after a uniform 25-75% of the budget (the rule's two patiences, reconent.sweep.search.oracle.RULE; replayed on
  the budgets study's curves at 50 epochs the rule saves only 25% of the untrainable epochs, analysis/stop_rule,
  because at 50 epochs most untrainable runs are slow risers it rightly lets run);
- labels flip near the boundary as in the bench's oracle (reconent.sweep.search.oracle);
- the probe's prediction (the search's prior): the demonstration's 63-step cutoffs (analysis/boundary_mnist5k/README.md)
  doubled, since at 63 steps the cutoff sits at about half its 938-step depth (docs/budgets.md), capped at the probe.

    python analysis/boundary_mnist5k/honest/estimate.py --epochs 50 --budget 32
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from reconent.science import theory
from reconent.sweep.search.boundary import BoundarySearch, Prior
from reconent.sweep.search.oracle import RULE, Oracle

ROOT = Path(__file__).resolve().parents[3]
SIGMA_W2 = [0.3, 0.5, 0.8, 1.2, 1.76, 2.5, 4.0, 8.0]  # the specs' columns
DEMO_CUTOFF_63 = [4.5, 6.5, 11, 22, 35.5, 37, 33.5, 23]  # the demonstration's depth-40 probes at 63 steps
GRID_DEPTHS = [4, 8, 16, 32, 64]  # grid.yaml
PROBE_DEPTH, DMAX = 100, 64  # search.yaml: probe depth, the trainings' deepest depth
# L* where the budgets study has not trained the column: a guess by epoch budget. Ordered side: 6·ξ_c times the
# ratio measured at σ_w² 1.2 (≈ 0.9 at 20 epochs, ≈ 1.3 at 50); near criticality: beyond the range; σ_w² 2.5:
# between criticality and the measured σ_w² 4.
ASSUMED_L = {20: {0.3: 4, 0.5: 6, 0.8: 12, 1.76: 80, 2.5: 30},
             50: {0.3: 6, 0.5: 9, 0.8: 18, 1.76: 80, 2.5: 40}}


def measured_l_star(epochs: int, threshold: float) -> dict[float, float]:
    """{σ_w²: L*} from the budgets study's stored curves at this budget (the middle of the bracket)."""
    from reconent import analysis

    rows = analysis.load(ROOT / "analysis/budgets/data/budgets_train", "train")
    out = {}
    for r in analysis.true_boundary_by_epochs(rows, threshold, [epochs]):
        lo, up = r["lower"], r["upper"]
        out[r["sigma_w2"]] = float(lo + 5 if up is None else (lo + up - 1) / 2 if lo > 0 else max(up - 2, 1))
    return out


def seconds_per_layer_epoch() -> float:
    from reconent import analysis

    t = analysis.load(ROOT / "analysis/budgets/data/budgets_train", "train")
    return float(np.median(t["seconds"] / (t["depth"] * t["epochs_run"])))


class HonestOracle(Oracle):
    """The bench's oracle (its label noise) with this study's boundaries, prior and costs."""

    def __init__(self, L, prediction, epochs: int, s: float, seed: int = 0):
        super().__init__(SIGMA_W2, cap=DMAX, seed=seed)
        self.L = np.asarray(L, float)
        self.pred, self.E, self.s = list(prediction), epochs, s

    def prediction(self, column: int) -> float:
        return self.pred[column]

    def run(self, column: int, depth: int, seed: int = 0) -> dict:
        u = np.random.default_rng([self.seed, 3, column, depth, seed]).random()
        label = self.label(column, depth, seed)
        x = min(1.0, depth / max(self.L[column], 1.0))
        E = self.E
        lo, hi = RULE.patience, RULE.flat_patience
        run = min(E, math.ceil(10 + (E - 10) * x ** 2)) if label else math.ceil(E * (lo + (hi - lo) * u))
        return {"label": label, "seconds": self.s * depth * run, "epochs_run": run}


def bracket(labels: dict[int, bool]) -> tuple[float, float]:
    """(lower, upper) as analysis.true_boundary reads trained depths: upper = the first untrainable depth (inf if
    none), lower = the deepest trainable depth below it (0 if none)."""
    bad = min((d for d, y in labels.items() if not y), default=math.inf)
    return max((d for d, y in labels.items() if y and d < bad), default=0), bad


def width(b) -> float:
    return b[1] - b[0]  # candidate depths lower … upper-1


def simulate(epochs: int, threshold: float, budget: int, resolution: float, s: float, seed: int,
             prior_factor: float | None = None) -> dict:
    meas = measured_l_star(epochs, threshold)
    L = [meas.get(w, ASSUMED_L.get(epochs, ASSUMED_L[50]).get(w)) for w in SIGMA_W2]
    if any(v is None for v in L):
        raise SystemExit(f"no assumed L* for {epochs} epochs; add it to ASSUMED_L")
    # the prior: the doubled 63-step cutoffs, or (`prior_factor`) a probe that is off by that factor everywhere
    pred = [min(2 * c if prior_factor is None else prior_factor * l, PROBE_DEPTH) for c, l in zip(DEMO_CUTOFF_63, L)]
    o = HonestOracle(L, pred, epochs, s, seed)
    grid = {c: {d: o.run(c, d) for d in GRID_DEPTHS} for c in range(len(SIGMA_W2))}
    grid_seconds = sum(r["seconds"] for g in grid.values() for r in g.values())
    priors = [Prior(min(p, DMAX), censored=p >= PROBE_DEPTH) for p in pred]
    search = BoundarySearch(len(SIGMA_W2), 1, DMAX, budget, resolution, priors, seeds=(0, 1))
    labels = {c: {} for c in range(len(SIGMA_W2))}
    while batch := search.ask(2):  # two trainings at a time: one per core
        for number, c, d, sd in batch:
            r = o.run(c, d, sd)
            labels[c].setdefault(d, r["label"])
            search.tell(number, r["label"], r["seconds"], r["epochs_run"] / epochs)
    gw = [width(bracket({d: r["label"] for d, r in grid[c].items()})) for c in grid]
    sw = [width(bracket(labels[c])) if labels[c] else math.inf for c in labels]
    both = [i for i in range(len(gw)) if math.isfinite(gw[i]) and math.isfinite(sw[i])]  # as compare.py reads them

    def med(v):
        return float(np.median([v[i] for i in both])) if both else math.nan
    return {"seed": seed, "L_star": L, "grid_trainings": 40, "grid_seconds": grid_seconds,
            "search_trainings": search.used(), "search_seconds": search.seconds(),
            "seconds_ratio": search.seconds() / grid_seconds, "grid_widths": gw, "search_widths": sw,
            "grid_median_width": med(gw), "search_median_width": med(sw),
            "width_ratio": med(sw) / med(gw)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--budget", type=int, default=32, help="the search's trainings")
    ap.add_argument("--resolution", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, default=5, help="oracle seeds (label noise and stop-rule timing)")
    ap.add_argument("--prior-factor", type=float, default=None,
                    help="the probe's prediction = this times L* (default: the doubled 63-step cutoffs)")
    ap.add_argument("--s-per-layer-epoch", type=float, default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    s = a.s_per_layer_epoch or seconds_per_layer_epoch()
    runs = [simulate(a.epochs, a.threshold, a.budget, a.resolution, s, k, a.prior_factor) for k in range(a.seeds)]
    out = {"epochs": a.epochs, "threshold": a.threshold, "budget": a.budget, "resolution": a.resolution,
           "prior_factor": a.prior_factor,
           "s_per_layer_epoch": s, "theory_6xi": [round(float(theory.trainable_depth(w, 0.05, "tanh")), 1)
                                                  for w in SIGMA_W2], "runs": runs}
    if a.json:
        print(json.dumps(out, indent=1))
        return
    print(f"epochs {a.epochs}, threshold {a.threshold}, search budget {a.budget} (resolution {a.resolution}), "
          f"{s:.2f} s per layer-epoch; assumed L* {runs[0]['L_star']}")
    print("seed  grid s   search s  trainings  ratio  grid median width  search median width  width ratio")
    for r in runs:
        print(f"{r['seed']:>4} {r['grid_seconds']:>8.0f} {r['search_seconds']:>9.0f} {r['search_trainings']:>10} "
              f"{r['seconds_ratio']:>6.2f} {r['grid_median_width']:>18.1f} {r['search_median_width']:>20.1f} "
              f"{r['width_ratio']:>12.2f}")


if __name__ == "__main__":
    main()
