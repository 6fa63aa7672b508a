"""`analyse`: everything the report shows, from stored probe and training rows, with the rules as parameters."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .agreement import boundary_table, bootstrap, cost, match, resolution_cost, score, true_boundary_by_epochs
from .boundary import boundary_keys, critical, deepest_probes, posterior_boundary, theory_boundary
from .frames import (CONVERGED_FRACTION, CONVERGED_LAYERS, group_keys, AnalysisError, AnalysisWarning, not_converged,
                     probe_budgets, probe_cutoffs, steps_list, train_verdicts)


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
    # the one probe budget and the one training budget read (`analyse`): probe_steps, probe_checkpoints,
    # probe_depth, epochs, threshold, rtol, the budgets stored, and where each budget came from (*_source)
    budgets: dict = field(default_factory=dict)

    def true_boundary_by_epochs(self, budgets=None) -> list[dict]:
        """The true boundary at the epoch budgets 1, 2, 5, 10, ... up to the largest trained (or `budgets`), from
        these training rows' stored curves at this analysis's threshold (agreement.true_boundary_by_epochs)."""
        return true_boundary_by_epochs(self.trains, self.threshold, budgets)

    def n_probe_not_converged(self) -> int:
        """The probes the prediction reads (the deepest per σ_w² and seed) whose cutoff had not converged."""
        d = deepest_probes(self.probes)
        return int(not_converged(d.get("converged", [])).sum())

    def groups(self) -> list[tuple]:
        keys = pd.concat([self.probes[group_keys()], self.trains[group_keys()]]).drop_duplicates()
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
            budgets=dict(self.budgets), n_probe_not_converged=self.n_probe_not_converged(),
            true_boundary_by_epochs=self.true_boundary_by_epochs(),
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


def _one(values):
    """A single value as itself, several as a sorted list, none as None (summary.json style)."""
    v = sorted(set(values))
    return None if not v else (v[0] if len(v) == 1 else v)


def default_probe_steps(probes: pd.DataFrame | None) -> int | None:
    """The largest decoder budget (`steps_run`) among the ok probe rows; None when none records one."""
    final = probe_budgets(probes)["final"]
    return final[-1] if final else None


def default_epochs(trains: pd.DataFrame | None) -> int | None:
    """The largest epoch budget among the training rows that did not error; None without any."""
    if trains is None or not len(trains) or "epochs" not in trains:
        return None
    ok = trains[~trains["status"].eq("error")] if "status" in trains else trains
    e = pd.to_numeric(ok["epochs"], errors="coerce").max()
    return int(e) if pd.notna(e) else None


def analyse(probes: pd.DataFrame | None, trains: pd.DataFrame | None, rtol: float | None = None,
            threshold: float | None = None, n_boot: int = 1000, rng=0, warn: bool = False,
            probe_steps: int | None = None, epochs: int | None = None) -> Analysis:
    """Verdicts, boundaries, agreement and cost. rtol/threshold None keep each row's stored rule.

    Budgets are never mixed: the probes are read at ONE decoder budget `probe_steps` (None: the largest
    `steps_run` stored; a row is read at its final profile when its steps_run is that budget, at a checkpoint when
    it has one there, and left out with a note otherwise), and the training rows give anytime verdicts at ONE epoch
    budget `epochs` (None: the largest stored). What was read is in `Analysis.budgets`.

    Raises AnalysisError (one line) only when nothing can be done: no rows at all, or required columns
    missing. Everything else that limits the result goes into `notes` (and AnalysisWarning when warn=True).
    """
    notes: list[str] = []
    if (probes is None or not len(probes)) and (trains is None or not len(trains)):
        raise AnalysisError("no probe and no training results found: nothing to analyse")
    stored = probe_budgets(probes)
    S = default_probe_steps(probes) if probe_steps is None else probe_steps
    E = default_epochs(trains) if epochs is None else epochs
    p = probe_cutoffs(probes, rtol, notes, steps=S)
    if probe_steps is not None and probes is not None and len(probes) and not len(p):
        notes.append(f"no probe can be read at {probe_steps} decoder steps: the probes stored ran "
                     f"{', '.join(map(str, stored['final'])) or 'an unrecorded number of'} steps, with checkpoints at "
                     f"{', '.join(map(str, stored['checkpoints'])) or 'none'}")
    t = train_verdicts(trains, threshold, notes, epochs=E)
    b = boundary_table(p, t, n_boot=n_boot, rng=rng)
    b = b.merge(theory_boundary(b), on=boundary_keys(), how="left") if len(b) else b.assign(theory_depth=[],
                                                                                    critical_sigma_w2=[])
    if len(b):  # the model's uncertainty, for adaptively chosen depths and grids alike
        b = posterior_boundary(t, b)
    m = match(p, t)
    s = score(p, t)
    iv = bootstrap(p, t, n_boot=n_boot, rng=rng)
    budgets = _budgets(p, t, S, E, rtol, threshold, stored, probe_steps, epochs)
    _budget_notes(p, t, budgets, notes)
    _edge_notes(p, t, m, s, b, notes)
    if warn:
        for n in notes:
            warnings.warn(n, AnalysisWarning, stacklevel=2)
    return Analysis(p, t, b, m, s, iv, cost(p, t, m), rtol, threshold, notes, resolution_cost(b, t), budgets)


def _budgets(p, t, S, E, rtol, threshold, stored, given_S, given_E) -> dict:
    deep = deepest_probes(p)
    ck = sorted({c for v in p.get("checkpoint_steps", []) for c in steps_list(v)})
    return dict(
        probe_steps=int(S) if S is not None else None,
        probe_checkpoints=ck,
        probe_depth=_one(deep["depth"].astype(int)) if len(deep) else None,
        probe_epochs=_one(pd.to_numeric(p["epochs"], errors="coerce").dropna().astype(int))
        if len(p) and "epochs" in p else None,
        probe_steps_stored=stored["final"], probe_checkpoints_stored=stored["checkpoints"],
        epochs=int(E) if E is not None else None,
        train_epochs_stored=sorted({int(x) for x in pd.to_numeric(t["epochs"], errors="coerce").dropna()}),
        threshold=float(threshold) if threshold is not None else _one(t["threshold_used"].astype(float)),
        rtol=float(rtol) if rtol is not None else _one(p["rtol_used"].astype(float)),
        probe_steps_source="largest" if given_S is None else "given",
        epochs_source="largest" if given_E is None else "given")


def _budget_notes(p, t, budgets, notes):
    deep = deepest_probes(p)
    if len(deep) < len(p):
        depths = sorted(set(p["depth"].astype(int)))
        notes.append(f"probes of several depths ({', '.join(map(str, depths))}) share a (σ_w², seed): the deepest is "
                     f"read (prefix property: its first ℓ layers are the depth-ℓ network), {len(p) - len(deep)} "
                     f"shallower probe(s) are not")
    bad = deep[not_converged(deep.get("converged", []))] if len(deep) else deep
    if len(bad):
        steps = sorted({(int(a), int(b)) for a, b in zip(bad["steps_prev"], bad["steps_used"])})
        moves = "; ".join(f"{a} → {b} steps" for a, b in steps)
        notes.append(f"{len(bad)} of the {len(deep)} probe cutoff(s) the prediction reads had not converged: they "
                     f"moved by more than max({CONVERGED_LAYERS} layer, {CONVERGED_FRACTION:.0%}) between the last two "
                     f"checkpoints ({moves}); a larger decoder budget would likely move the predicted boundary")
    budgets_t = budgets["train_epochs_stored"]
    if len(budgets_t) > 1:
        notes.append(f"training rows with epoch budgets {', '.join(map(str, budgets_t))}: all are read as anytime "
                     f"verdicts at {budgets['epochs']} epochs (passed by then, or ran that long without passing)")


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
