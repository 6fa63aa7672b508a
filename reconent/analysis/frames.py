"""Stored rows in, verdicts out: loading sweeps, checking columns, re-deriving cutoffs and training verdicts.

The trials only measure (SCIENCE §7); every verdict here is recomputed from the raw measurements with
the rule as a parameter, so changing rtol or the accuracy threshold never needs a re-run.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reconent.science.entropy import cutoff_from_normalised
from reconent.sweep import columns
# Every column the analysis needs exists since row schema version 1 (v2 only took rtol out of the point id).
READS_SCHEMA = 1

# One predicted/true boundary L*(σ_w²) per group: everything except σ_w², depth and seed.
GROUP = list(columns.GROUP)
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
    optional ones with NaN and say so. Returns a copy with GROUP columns present (None where absent)."""
    if df is None or not len(df):
        return pd.DataFrame(columns=list(dict.fromkeys(GROUP + NEEDS[kind] + OPTIONAL[kind])))
    # reconent.results fills a column an older part lacks with nulls: all-null counts as missing
    done = df[~df["status"].eq("error")] if "status" in df else df
    missing = [c for c in NEEDS[kind] if c not in df.columns or (len(done) and done[c].isna().all())]
    if missing:
        found = sorted(map(str, df["schema_version"].dropna().unique())) if "schema_version" in df else ["unknown"]
        raise AnalysisError(f"{kind} results lack column(s) {', '.join(missing)}; the analysis needs reconent "
                            f"row schema version >= {READS_SCHEMA} (found schema version {', '.join(found)})")
    df = df.reset_index(drop=True)  # frames concatenated by callers may repeat index labels
    for c in GROUP:
        if c not in df:
            df[c] = None
    absent = [c for c in OPTIONAL[kind] if c not in df.columns or (len(done) and done[c].isna().all())]
    if absent:
        notes.append(f"{kind} results lack optional column(s) {', '.join(absent)} (schema version < "
                     f"{READS_SCHEMA}?): the parts that need them are left out")
        for c in absent:
            df[c] = np.nan if c != "epochs_run" else df["accuracy"].map(lambda a: len(a) if a is not None else 0)
    # width/channels are None where the architecture has none: as float NaN they group and merge consistently
    for c in ("width", "channels"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df


def _usable(df: pd.DataFrame, kind: str, notes: list[str]) -> pd.DataFrame:
    bad = df["status"].eq("error")
    if bad.any():
        notes.append(f"{int(bad.sum())} {kind} trial(s) with status 'error' are left out")
    return df[~bad]


def probe_cutoffs(probes: pd.DataFrame, rtol: float | None = None, notes: list[str] | None = None) -> pd.DataFrame:
    """Probe rows with `cutoff` re-derived from `relative_entropy_norm_median` for `rtol` (None: each row's own
    stored rtol), `rtol_used`, and `censored` (no plateau inside the probe: the boundary lies at or beyond it).

    The last layer's normalised value is 1 by construction, so a cutoff at the last-but-one layer means the entropy still
    moved by more than rtol at the last step: the plateau has not set in within the probe, and the probe can
    only say L* >= depth. Diverged probes (non-finite entropies) are dropped: their profile says nothing.
    """
    notes = [] if notes is None else notes
    p = _usable(check_columns(probes, "probe", notes), "probe", notes)
    div = ~p["status"].eq("ok")
    if div.any():
        notes.append(f"{int(div.sum())} probe(s) diverged (non-finite entropy) and give no prediction")
    p = p[~div].copy()
    if rtol is not None and not (rtol > 0 and math.isfinite(rtol)):
        raise AnalysisError(f"rtol must be a positive number, got {rtol}")
    p["rtol_used"] = p["rtol"].astype(float) if rtol is None else float(rtol)
    # cnn/resnet profiles also cover the 3-layer conv stem (models.STEM_LAYERS): layer ℓ is block ℓ - stem
    p["n_layers"] = p["relative_entropy_norm_median"].map(len).astype(int)
    p["stem"] = (p["n_layers"] - p["depth"]).clip(lower=0)
    # ok rows only (diverged ones are dropped above), so a null/NaN layer is one the probe did not evaluate
    # (eval_depths: search) and the cutoff rule passes over it
    p["cutoff_layer"] = [cutoff_from_normalised(np.asarray(r, float), t, skip_nan=True) for r, t in
                         zip(p["relative_entropy_norm_median"], p["rtol_used"])]
    p["cutoff"] = (p["cutoff_layer"] - p["stem"]).clip(lower=0)  # in units of `depth`
    p["censored"] = p["cutoff_layer"] >= p["n_layers"] - 1
    return p


def train_verdicts(trains: pd.DataFrame, threshold: float | None = None, notes: list[str] | None = None) -> pd.DataFrame:
    """Training rows with `trainable` re-derived from the stored accuracy curve for `threshold` (None: each
    row's own stored threshold): True / False / NaN (unknown), plus `threshold_used`.

    Reached = some epoch's accuracy > threshold. A run that stopped early (it reached its own, lower stored
    threshold before its epoch budget) never ran the later epochs, so if it did not exceed a HIGHER threshold
    the verdict is unknown (censored), not False. A diverged run is untrainable for every threshold.
    """
    notes = [] if notes is None else notes
    t = _usable(check_columns(trains, "train", notes), "train", notes).copy()
    if threshold is not None and not (0 <= threshold <= 1):
        raise AnalysisError(f"threshold is an accuracy in [0, 1], got {threshold}")
    t["threshold_used"] = t["threshold"].astype(float) if threshold is None else float(threshold)
    verdict = []
    for acc, thr, status, run, budget in zip(t["accuracy"], t["threshold_used"], t["status"],
                                             t["epochs_run"], t["epochs"]):
        acc = np.asarray(acc if acc is not None else [], float)
        if acc.size and np.nanmax(acc, initial=-np.inf) > thr:
            verdict.append(True)
        elif status == "diverged" or (run if pd.notna(run) else acc.size) >= budget:
            verdict.append(False)
        else:
            verdict.append(np.nan)  # stopped early at its own threshold: later epochs unknown
    t["trainable"] = pd.Series(verdict, index=t.index, dtype=object)
    n_cens = int(t["trainable"].isna().sum())
    if n_cens:
        notes.append(f"{n_cens} training trial(s) stopped early at their stored threshold and never saw the "
                     f"higher threshold asked for: their verdict is unknown (censored) and left out of the scores")
    return t


def group_label(key) -> str:
    """A short human label for a GROUP key tuple, naming only what is set."""
    d = dict(zip(GROUP, key if isinstance(key, tuple) else (key,)))
    size = (f"width {d['width']:.0f}" if pd.notna(d["width"]) else f"{d['channels']:.0f} channels"
            if pd.notna(d["channels"]) else "width = input size" if d["arch"] == "mlp" else "")
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
