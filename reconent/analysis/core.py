"""`analyse`: everything the report shows, from stored probe and training rows, with the rules as parameters."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .agreement import boundary_table, bootstrap, cost, match, resolution_cost, score
from .boundary import KEYS, critical, posterior_boundary, theory_boundary
from .frames import GROUP, AnalysisError, AnalysisWarning, probe_cutoffs, train_verdicts


@dataclass
class Analysis:
    probes: pd.DataFrame  # usable probe rows, with `cutoff` and `censored` for this rtol
    trains: pd.DataFrame  # usable training rows, with `trainable` (True/False/NaN) for this threshold
    boundaries: pd.DataFrame  # per (group, σ_w²): predicted, true and theory boundary, their distances
    matched: pd.DataFrame  # training trials with their prediction
    scores: dict  # confusion counts, metrics, boundary distances
    intervals: dict  # bootstrap intervals over seeds {metric: (lo, hi)}; {} with one seed
    cost: pd.DataFrame
    rtol: float | None
    threshold: float | None
    notes: list[str] = field(default_factory=list)
    resolution: pd.DataFrame | None = None  # trainings against a depth grid of the same resolution

    def groups(self) -> list[tuple]:
        keys = pd.concat([self.probes[GROUP], self.trains[GROUP]]).drop_duplicates()
        return [tuple(r) for r in keys.itertuples(index=False)]

    def summary(self) -> dict:
        """Headline numbers for scripts (summary.json): plain JSON types, NaN as null."""
        c = self.cost.set_index("scope")
        cov, grid = c.loc["points both cover"], c.loc["whole grid"]
        crit = sorted({critical(b, a, r) for b, a, r in zip(self.boundaries["sigma_b2"], self.boundaries["activation"],
                                                             self.boundaries["arch"])})
        rtols = sorted(set(self.probes.get("rtol_used", pd.Series(dtype=float))))
        thrs = sorted(set(self.trains.get("threshold_used", pd.Series(dtype=float))))
        out = dict(
            n_probe_points=len(self.probes), n_train_points=len(self.trains), n_scored=self.scores["n_scored"],
            confusion={k: self.scores[k] for k in ("tp", "fp", "fn", "tn")},
            **{k: self.scores[k] for k in ("precision", "recall", "f1", "balanced_accuracy", "accuracy",
                                           "boundary_distance_depth", "boundary_distance_log_depth")},
            intervals={k: list(v) for k, v in self.intervals.items()},
            probe_seconds=float(cov["probe_seconds"]), train_seconds=float(cov["train_seconds"]),
            saving_factor=float(cov["saving_factor"]),
            probe_seconds_grid=float(grid["probe_seconds"]), train_seconds_grid=float(grid["train_seconds"]),
            saving_factor_grid=float(grid["saving_factor"]),
            critical_sigma_w2=crit[0] if len(crit) == 1 else crit,
            rtol=self.rtol if self.rtol is not None else (rtols[0] if len(rtols) == 1 else rtols),
            threshold=self.threshold if self.threshold is not None else (thrs[0] if len(thrs) == 1 else thrs),
            notes=list(self.notes))
        return _clean(out)


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(x) else float(x)
    return x


def analyse(probes: pd.DataFrame | None, trains: pd.DataFrame | None, rtol: float | None = None,
            threshold: float | None = None, n_boot: int = 1000, rng=0, warn: bool = False) -> Analysis:
    """Verdicts, boundaries, agreement and cost. rtol/threshold None keep each row's stored rule.

    Raises AnalysisError (one line) only when nothing can be done: no rows at all, or required columns
    missing. Everything else that limits the result goes into `notes` (and AnalysisWarning when warn=True).
    """
    notes: list[str] = []
    if (probes is None or not len(probes)) and (trains is None or not len(trains)):
        raise AnalysisError("no probe and no training results found: nothing to analyse")
    p = probe_cutoffs(probes, rtol, notes)
    t = train_verdicts(trains, threshold, notes)
    b = boundary_table(p, t, n_boot=n_boot, rng=rng)
    b = b.merge(theory_boundary(b), on=KEYS, how="left") if len(b) else b.assign(theory_depth=[],
                                                                                    critical_sigma_w2=[])
    if len(b):  # the model's uncertainty, for adaptively chosen depths and grids alike
        b = posterior_boundary(t, b)
    m = match(p, t)
    s = score(p, t)
    iv = bootstrap(p, t, n_boot=n_boot, rng=rng)
    _edge_notes(p, t, m, s, b, notes)
    if warn:
        for n in notes:
            warnings.warn(n, AnalysisWarning, stacklevel=2)
    return Analysis(p, t, b, m, s, iv, cost(p, t, m), rtol, threshold, notes, resolution_cost(b, t))


def _edge_notes(p, t, m, s, b, notes):
    if not len(t):
        notes.append("no training results: the prediction cannot be scored; only the probe boundary and theory "
                     "are shown (run the sweep's training trials for ground truth)")
    if not len(p):
        notes.append("no usable probe results: there is no predicted boundary, only the training ground truth")
    w = sorted(set(p["sigma_w2"]) | set(t["sigma_w2"]))
    if not w:
        return
    if len(w) == 1:
        notes.append(f"a single σ_w² ({w[0]:g}) was swept: each boundary is one point, not a curve over σ_w²")
    known = t["trainable"].dropna()
    if len(known) and known.astype(bool).all():
        notes.append("every training trial with a known verdict reached the threshold: the true boundary lies "
                     "beyond the deepest trained depth (a lower bound only); add deeper or less critical points")
    if len(known) and not known.astype(bool).any():
        notes.append("no training trial reached the threshold: the true boundary lies below the shallowest trained "
                     "depth; lower the threshold, raise the epoch budget or add shallower points")
    if len(t) and len(p):
        n_unk = int((m["predicted"].isna() & m["pred_source"].notna()).sum())
        n_none = int(m["pred_source"].isna().sum())
        if n_none:
            notes.append(f"{n_none} training trial(s) have no probe at their (σ_w², σ_b², architecture, dataset) "
                         f"and are not scored")
        if n_unk:
            notes.append(f"{n_unk} training trial(s) are deeper than a probe that saw no plateau: prediction unknown, "
                         f"not scored (probe deeper)")
        if s["n_scored"] == 0:
            notes.append("no point is covered by both a prediction and a known training verdict: nothing to score")
        elif math.isnan(s["balanced_accuracy"]):
            notes.append("all scored points have the same true verdict: balanced accuracy (and possibly precision "
                         "or recall) is undefined")
    viol = b["n_violations"].fillna(0).astype(int)
    if viol.any():
        notes.append(f"training is not monotone in depth at {int((viol > 0).sum())} σ_w² value(s) ({int(viol.sum())} "
                     f"trainable depth(s) above an untrainable one): the true boundary is the first failure")
