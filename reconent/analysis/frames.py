"""Stored rows in, verdicts out: loading sweeps, checking columns, re-deriving cutoffs and training verdicts.

The trials only measure (SCIENCE §7); every verdict here is recomputed from the raw measurements with
the rule as a parameter, so changing rtol or the accuracy threshold never needs a re-run. So are the budgets:
a probe is read at any decoder budget it has a profile for (its final one or a checkpoint's), a training run at
any epoch budget its stored curve speaks for (anytime verdicts).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reconent.science import archs
from reconent.science.entropy import depth_cutoff
from reconent.sweep import columns
# Every column the analysis needs exists since row schema version 1 (v2 only took rtol out of the point id).
READS_SCHEMA = 1

# One predicted/true boundary L*(σ_w²) per group: everything except σ_w², depth and seed.
def group_keys() -> list[str]:
    """The columns that name a group (every coordinate but σ_w², depth, seed and kind), registered
    architecture settings included: read at call time, since an arch may be registered after import."""
    return columns.group()


# Columns without which a part of the analysis cannot run, per kind (all exist since schema version 1).
NEEDS = {
    "probe": ["sigma_w2", "sigma_b2", "depth", "seed", "status", "rtol", "relative_entropy_norm_median"],
    "train": ["sigma_w2", "sigma_b2", "depth", "seed", "status", "threshold", "epochs", "accuracy"],
}
OPTIONAL = {  # used when present: figures and cost tables degrade gracefully without them
    "probe": ["relative_entropy_median", "differential_entropy", "seconds"],
    "train": ["epochs_run", "seconds"],
}


class AnalysisError(ValueError):
    """Nothing can be done (one line; the CLI prints it as `reconent: error: ...`)."""


class AnalysisWarning(UserWarning):
    """Something the reader must know; the analysis also collects these lines in its `notes`."""


def load(uris, kind: str) -> pd.DataFrame:
    """Rows of `kind` from one or several sweeps (a URI each: `<storage>/<sweep name>`, or a storage root),
    concatenated by reconent.results; an empty frame when none of them has rows of this kind."""
    from reconent.sweep import results

    uris = [uris] if isinstance(uris, (str, bytes)) or hasattr(uris, "__fspath__") else list(uris)
    try:
        return results.load([str(u) for u in uris], kind)
    except results.NoResults:
        return pd.DataFrame()


def check_columns(df: pd.DataFrame, kind: str, notes: list[str]) -> pd.DataFrame:
    """Raise a one-line AnalysisError naming the missing columns and the schema they need; fill the
    optional ones with NaN and say so. Returns a copy with group_keys() columns present (None where absent)."""
    if df is None or not len(df):
        return pd.DataFrame(columns=list(dict.fromkeys(group_keys() + NEEDS[kind] + OPTIONAL[kind])))
    # reconent.results fills a column an older part lacks with nulls: all-null counts as missing
    done = df[~df["status"].eq("error")] if "status" in df else df
    missing = [c for c in NEEDS[kind] if c not in df.columns or (len(done) and done[c].isna().all())]
    if missing:
        found = sorted(map(str, df["schema_version"].dropna().unique())) if "schema_version" in df else ["unknown"]
        raise AnalysisError(f"{kind} results lack column(s) {', '.join(missing)}; the analysis needs reconent "
                            f"row schema version >= {READS_SCHEMA} (found schema version {', '.join(found)})")
    df = df.reset_index(drop=True)  # frames concatenated by callers may repeat index labels
    for c in group_keys():
        if c not in df:
            df[c] = None
    absent = [c for c in OPTIONAL[kind] if c not in df.columns or (len(done) and done[c].isna().all())]
    if absent:
        notes.append(f"{kind} results lack optional column(s) {', '.join(absent)} (schema version < "
                     f"{READS_SCHEMA}?): the parts that need them are left out")
        for c in absent:
            df[c] = np.nan if c != "epochs_run" else df["accuracy"].map(lambda a: len(a) if a is not None else 0)
    return numeric_sizes(df)


def numeric_sizes(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with every numeric sizing setting it has as float, NaN where unset (None where the architecture has
    none): so rows group and merge consistently by size."""
    for s in archs.settings():
        if s.type is not str and s.name in df:
            df[s.name] = pd.to_numeric(df[s.name], errors="coerce").astype(float)
    return df


def _usable(df: pd.DataFrame, kind: str, notes: list[str]) -> pd.DataFrame:
    bad = df["status"].eq("error")
    if bad.any():
        notes.append(f"{int(bad.sum())} {kind} trial(s) with status 'error' are left out")
    return df[~bad]


# The anytime probe's columns (schema 3): absent or null in older rows, which then have one reading only.
CHECKPOINTS = ("steps_run", "checkpoint_steps", "checkpoint_norm_median")
# Profiles measured at the final budget only: a row read at an earlier checkpoint has none of them.
FINAL_ONLY = ("relative_entropy_median", "relative_entropy_mean", "relative_entropy_q25", "relative_entropy_q75",
              "differential_entropy", "decoder_loss")
# A cutoff has converged when it moved by at most max(CONVERGED_LAYERS, CONVERGED_FRACTION × cutoff) between
# the last two checkpoints up to the budget read.
CONVERGED_LAYERS, CONVERGED_FRACTION = 1, 0.05


def _vec(v) -> np.ndarray:
    """A stored per-layer list (list, numpy array, nulls as None) as a float array with NaN for null."""
    if v is None or (np.isscalar(v) and pd.isna(v)):
        return np.zeros(0)
    return np.array([np.nan if x is None else x for x in v], float)


def steps_list(v) -> list[int]:
    """A stored `checkpoint_steps` cell (list, array, or null) as a list of ints."""
    if v is None or (np.isscalar(v) and pd.isna(v)):
        return []
    return [int(x) for x in v if x is not None and not pd.isna(x)]


def _with_checkpoint_columns(p: pd.DataFrame) -> pd.DataFrame:
    for c in CHECKPOINTS:
        if c not in p:
            p[c] = None
    p["steps_run"] = pd.to_numeric(p["steps_run"], errors="coerce").astype(float)
    return p


def probe_budgets(probes: pd.DataFrame | None) -> dict:
    """The decoder budgets the ok probe rows can be read at: {'final': sorted steps_run values, 'checkpoints':
    sorted checkpoint steps (the finals included)}; both empty when no row records its budget."""
    if probes is None or not len(probes) or "status" not in probes:
        return {"final": [], "checkpoints": []}
    ok = _with_checkpoint_columns(probes[probes["status"].eq("ok")].copy())
    final = sorted({int(x) for x in ok["steps_run"].dropna()})
    ck = sorted({s for v in ok["checkpoint_steps"] for s in steps_list(v)} | set(final))
    return {"final": final, "checkpoints": ck}


def _at_steps(row, steps: int):
    """The normalised median profile of `row` after `steps` decoder steps, or None when the row has no reading
    there: its final profile when steps == steps_run, else the checkpoint's."""
    if pd.notna(row["steps_run"]) and int(row["steps_run"]) == steps:
        return _vec(row["relative_entropy_norm_median"])
    ck = steps_list(row["checkpoint_steps"])
    prof = row["checkpoint_norm_median"]
    if steps in ck and prof is not None and not np.isscalar(prof):
        if len(prof) == len(ck):
            v = _vec(prof[ck.index(steps)])
            return v if v.size else None  # a checkpoint without a profile is no reading
    return None


def _left_out_note(gone: pd.DataFrame, steps: int) -> str:
    parts, hints = [], []
    for s, g in gone.groupby(gone["steps_run"].fillna(-1), sort=True):
        what = "probe(s) " if not parts else ""
        if s < 0:
            parts.append(f"{len(g)} {what}without a recorded decoder budget (steps_run)")
            continue
        ck = sorted({c for v in g["checkpoint_steps"] for c in steps_list(v)} - {int(s)})
        parts.append(f"{len(g)} {what}at {int(s)} decoder steps" + (f" (checkpoints {', '.join(map(str, ck))})"
                                                                     if ck else ""))
        hints.append(f"--steps {int(s)}")
    return (f"{' and '.join(parts)} left out: the analysis reads {steps} decoder steps (a boundary is only "
            f"meaningful with its budget; budgets are never mixed)" + (f"; {' or '.join(hints)} to see them"
                                                                        if hints else ""))


def probe_cutoffs(probes: pd.DataFrame, rtol: float | None = None, notes: list[str] | None = None,
                  steps: int | None = None) -> pd.DataFrame:
    """Probe rows with `cutoff` re-derived from `relative_entropy_norm_median` for `rtol` (None: each row's own
    stored rtol), `rtol_used`, and `censored` (no plateau inside the probe: the boundary lies at or beyond it).

    The last layer's normalised value is 1 by construction, so a cutoff at the last-but-one layer means the entropy still
    moved by more than rtol at the last step: the plateau has not set in within the probe, and the probe can
    only say L* >= depth. Diverged probes (non-finite entropies) are dropped: their profile says nothing.

    `steps`: read every probe at this decoder budget (Adam steps): a row whose `steps_run` is `steps` with its
    final profile, a row with a checkpoint at `steps` with that checkpoint's profile (which then replaces
    `relative_entropy_norm_median`; the profiles measured only at the end, FINAL_ONLY, become null), and every
    other row is left out with a note. None: each row's own final profile (budgets may then be mixed).
    Added columns: `steps_used` (the budget read), `from_checkpoint`, `steps_prev`/`cutoff_prev` (the checkpoint
    before it) and `converged` (True/False, None with a single reading up to `steps_used`).
    """
    notes = [] if notes is None else notes
    p = _usable(check_columns(probes, "probe", notes), "probe", notes)
    div = ~p["status"].eq("ok")
    if div.any():
        notes.append(f"{int(div.sum())} probe(s) diverged (non-finite entropy) and give no prediction")
    p = _with_checkpoint_columns(p[~div].copy())
    if rtol is not None and not (rtol > 0 and math.isfinite(rtol)):
        raise AnalysisError(f"rtol must be a positive number, got {rtol}")
    if steps is not None and not (float(steps) == int(steps) and int(steps) >= 1):
        raise AnalysisError(f"the decoder budget (steps) is a positive whole number, got {steps}")
    p["from_checkpoint"] = False
    if steps is not None:
        steps = int(steps)
        prof = [_at_steps(r, steps) for _, r in p.iterrows()]
        keep = np.array([v is not None for v in prof], bool)
        if (~keep).any():
            notes.append(_left_out_note(p[~keep], steps))
        p["from_checkpoint"] = [v is not None and not (pd.notna(r) and int(r) == steps)
                                for v, r in zip(prof, p["steps_run"])]
        p["relative_entropy_norm_median"] = pd.Series([list(v) if v is not None else None for v in prof],
                                                      index=p.index, dtype=object)
        p = p[keep].copy()
        for c in FINAL_ONLY:  # measured at the end of training, not at this checkpoint
            if c in p and p["from_checkpoint"].any():
                p[c] = p[c].where(~p["from_checkpoint"], None)
        p["steps_used"] = float(steps)
    else:
        p["steps_used"] = p["steps_run"]
    p["rtol_used"] = p["rtol"].astype(float) if rtol is None else float(rtol)
    # ok rows only (diverged ones are dropped above), so a null/NaN layer is one the probe did not evaluate
    # (eval_depths: search); cutoffs in units of `depth` (cnn/resnet profiles also cover the conv stem)
    read = [depth_cutoff(_vec(r), t, d) for r, t, d in
            zip(p["relative_entropy_norm_median"], p["rtol_used"], p["depth"])]
    p["n_layers"] = p["relative_entropy_norm_median"].map(len).astype(int)
    for f in ("stem", "cutoff", "censored"):
        p[f] = pd.Series([getattr(c, f) for c in read], index=p.index, dtype=bool if f == "censored" else int)
    p["cutoff_layer"] = [c.layer for c in read]
    prev = [_previous_cutoff(r) for _, r in p.iterrows()]
    p["steps_prev"] = [x[0] for x in prev]
    p["cutoff_prev"] = [x[1] for x in prev]
    p["converged"] = pd.Series([None if math.isnan(c0) else bool(abs(c - c0) <= max(
        CONVERGED_LAYERS, CONVERGED_FRACTION * c)) for c, c0 in zip(p["cutoff"], p["cutoff_prev"])],
        index=p.index, dtype=object)
    return p


def not_converged(converged) -> np.ndarray:
    """True where a probe's `converged` (probe_cutoffs) is known and False; None/NaN (one checkpoint) is unknown."""
    return np.array([c is not None and not pd.isna(c) and not bool(c) for c in converged], dtype=bool)


def _previous_cutoff(row) -> tuple[float, float]:
    """(steps, cutoff in depth units) at the checkpoint before the budget read; NaNs when there is none."""
    used = row["steps_used"]
    ck = steps_list(row["checkpoint_steps"])
    if pd.isna(used) or not ck:
        return math.nan, math.nan
    before = [s for s in ck if s < int(used)]
    if not before:
        return math.nan, math.nan
    prof = _at_steps(row, before[-1])
    if prof is None or len(prof) != row["n_layers"]:
        return math.nan, math.nan
    return float(before[-1]), float(depth_cutoff(prof, row["rtol_used"], row["depth"]).cutoff)


def train_verdicts(trains: pd.DataFrame, threshold: float | None = None, notes: list[str] | None = None,
                   epochs: int | None = None) -> pd.DataFrame:
    """Training rows with `trainable` re-derived from the stored accuracy curve for `threshold` (None: each
    row's own stored threshold) at an epoch budget `epochs` (None: each row's own budget): True / False / NaN
    (unknown), plus `threshold_used`, `epochs_used`, `passed_at` (the first epoch whose accuracy exceeds the
    threshold; NaN if none did) and `verdict_predicted` (the verdict is the stop rule's prediction, not observed).

    Anytime verdicts (SCIENCE §3: monotone in the budget): a run that passed at epoch e is trainable for every
    budget >= e. One that did not pass by the budget E is untrainable at E only if it actually ran E epochs (or
    diverged: untrainable at every budget). Otherwise it is unknown (censored), never False: its own budget was
    below E, or it stopped early at its own, lower stored threshold before E and never saw a higher one.

    A run the stop rule ended (`stopped_early`, science.train) is untrainable *by prediction* for its own
    threshold or a higher one, at its own budget or a lower one it did not run (the rule said it cannot pass by
    its budget, so not by an earlier one either): `verdict_predicted` marks those. At a lower threshold it did
    not pass, or a larger budget, it is unknown, never untrainable.
    """
    notes = [] if notes is None else notes
    t = _usable(check_columns(trains, "train", notes), "train", notes).copy()
    if threshold is not None and not (0 <= threshold <= 1):
        raise AnalysisError(f"threshold is an accuracy in [0, 1], got {threshold}")
    if epochs is not None and not (float(epochs) == int(epochs) and int(epochs) >= 1):
        raise AnalysisError(f"the epoch budget is a positive whole number, got {epochs}")
    t["threshold_used"] = t["threshold"].astype(float) if threshold is None else float(threshold)
    t["epochs_used"] = pd.to_numeric(t["epochs"], errors="coerce").astype(float) if epochs is None else float(epochs)
    verdict, passed, short, by_rule = [], [], 0, []
    stopped = t["stopped_early"].eq(True) if "stopped_early" in t else pd.Series(False, index=t.index)
    for acc, thr, status, run, budget, E, stop, own in zip(t["accuracy"], t["threshold_used"], t["status"],
                                                           t["epochs_run"], t["epochs"], t["epochs_used"], stopped,
                                                           t["threshold"].astype(float)):
        acc = _vec(acc)
        above = np.flatnonzero(acc > thr)
        first = int(above[0]) + 1 if above.size else math.nan
        passed.append(float(first))
        ran = run if pd.notna(run) else acc.size
        by_rule.append(False)
        if first <= E:
            verdict.append(True)
        elif status == "diverged" or ran >= E:
            verdict.append(False)
        elif stop and thr >= own and E <= budget:
            verdict.append(False)
            by_rule[-1] = True
        else:
            verdict.append(np.nan)  # never saw epochs up to E: unknown
            short += bool(pd.notna(budget) and budget < E)
    t["trainable"] = pd.Series(verdict, index=t.index, dtype=object)
    t["passed_at"] = passed
    t["verdict_predicted"] = by_rule
    if any(by_rule):
        notes.append(f"{sum(by_rule)} training trial(s) were stopped early by their stop rule: their 'untrainable' is "
                     f"predicted from the accuracy curve, not observed (marked 'predicted')")
    n_cens = int(t["trainable"].isna().sum()) - int((stopped & t["trainable"].isna()).sum())
    n_stop = int((stopped & t["trainable"].isna()).sum())
    if n_stop:
        notes.append(f"{n_stop} training trial(s) stopped early by their stop rule cannot speak for this threshold or "
                     f"budget (the rule predicted a lower threshold or a smaller budget): unknown, left out of the "
                     f"scores")
    if n_cens - short:
        notes.append(f"{n_cens - short} training trial(s) stopped early at their stored threshold and never saw the "
                     f"higher threshold asked for: their verdict is unknown (censored) and left out of the scores")
    if short:
        notes.append(f"{short} training trial(s) had an epoch budget below the {int(t['epochs_used'].max())} epochs "
                     f"asked for and did not pass within it: their verdict at that budget is unknown (censored) and "
                     f"left out of the scores")
    return t


def group_label(key) -> str:
    """A short human label for a group_keys() key tuple, naming only what is set."""
    d = dict(zip(group_keys(), key if isinstance(key, tuple) else (key,)))
    sizes = [f"{k} {d[k]:.0f}" if isinstance(d[k], float) else f"{k} {d[k]}" for k in archs.sizes() if pd.notna(d.get(k))]
    size = ", ".join(sizes) or ("width = input size" if d["arch"] == "mlp" else "")
    return ", ".join(s for s in (f"{d['arch']} {d['activation']}", size, f"σ_b²={d['sigma_b2']:g}",
                                 str(d["dataset"])) if s)


def per_layer(probes: pd.DataFrame) -> pd.DataFrame:
    """reconent.results.layers (one row per probe and layer ℓ = 1..) plus `depth_index` = ℓ - stem, the layer
    in units of `depth` (the cnn/resnet stem layers get depth_index <= 0)."""
    from reconent.sweep import results

    lay = results.layers(probes)
    stem = probes.drop_duplicates("point_id").set_index("point_id")["stem"] if "stem" in probes else None
    lay["depth_index"] = lay["layer"] - (lay["point_id"].map(stem).fillna(0).astype(int) if stem is not None else 0)
    return lay
