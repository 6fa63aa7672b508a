"""Score the probe prediction against training on the points both cover, and measure what it cost.

The unit scored is one training trial (group, σ_w², depth, seed). Its prediction comes from the probe of the
same seed at that (group, σ_w²), which has the very same initial weights, when there is one; otherwise from
the median cutoff over the probe seeds. Trials whose verdict or prediction is unknown are not scored.
Uncertainty: a cluster bootstrap over seeds (resample whole seeds, probes and training together).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .boundary import KEYS, gap, predict, predicted_boundary, seed_boundaries, true_boundary

METRICS = ["precision", "recall", "f1", "balanced_accuracy", "accuracy"]


def confusion(pred, true) -> dict:
    """Counts with 'trainable' as the positive class."""
    p, t = np.asarray(pred, bool), np.asarray(true, bool)
    return dict(tp=int((p & t).sum()), fp=int((p & ~t).sum()), fn=int((~p & t).sum()), tn=int((~p & ~t).sum()))


def _div(a, b):
    return a / b if b else float("nan")


def metrics(c: dict) -> dict:
    """Precision, recall (= true positive rate), F1, balanced accuracy and accuracy from confusion counts;
    NaN where a denominator is empty (e.g. balanced accuracy when one class is absent)."""
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    prec, rec, tnr = _div(tp, tp + fp), _div(tp, tp + fn), _div(tn, tn + fp)
    return dict(precision=prec, recall=rec, f1=_div(2 * tp, 2 * tp + fp + fn), balanced_accuracy=(rec + tnr) / 2,
                accuracy=_div(tp + tn, tp + fp + fn + tn))


def match(probes: pd.DataFrame, trains: pd.DataFrame) -> pd.DataFrame:
    """Training trials with the prediction for them: columns `predicted` (True/False/NaN), `pred_source`
    ('seed' or 'median'), `pred_lo`, `pred_hi`, plus the trial's `trainable`, `seconds` and `probe_seconds`."""
    if not len(trains) or not len(probes):
        return pd.DataFrame(columns=KEYS + ["depth", "seed", "trainable", "predicted", "pred_source"])
    sb = seed_boundaries(probes)
    pb = predicted_boundary(probes, n_boot=0)[KEYS + ["pred_lo", "pred_hi"]]
    t = trains[KEYS + ["depth", "seed", "trainable", "seconds"]]
    m = t.merge(sb[KEYS + ["seed", "pred_lo", "pred_hi"]], on=KEYS + ["seed"], how="left")
    m = m.merge(pb, on=KEYS, how="left", suffixes=("", "_median"))
    own = m["pred_lo"].notna()
    m["pred_source"] = np.where(own, "seed", np.where(m["pred_lo_median"].notna(), "median", None))
    m["pred_lo"] = m["pred_lo"].where(own, m["pred_lo_median"])
    m["pred_hi"] = m["pred_hi"].where(own, m["pred_hi_median"])
    m["predicted"] = pd.Series([predict(lo, hi, d) if pd.notna(lo) else np.nan
                                for lo, hi, d in zip(m["pred_lo"], m["pred_hi"], m["depth"])], dtype=object)
    return m.drop(columns=["pred_lo_median", "pred_hi_median"])


def scored(matched: pd.DataFrame) -> pd.DataFrame:
    return matched[matched["predicted"].notna() & matched["trainable"].notna()]


def boundary_table(probes: pd.DataFrame, trains: pd.DataFrame, n_boot: int = 1000, rng=0) -> pd.DataFrame:
    """Per (group, σ_w²): predicted and true intervals side by side, with their gap in depth and log-depth."""
    pb, tb = predicted_boundary(probes, n_boot=n_boot, rng=rng), true_boundary(trains)
    b = pb.merge(tb, on=KEYS, how="outer", suffixes=("_pred", "_true"))
    b["distance_depth"] = gap(b["pred_lo"], b["pred_hi"], b["true_lo"], b["true_hi"])
    b["distance_log_depth"] = gap(b["pred_lo"], b["pred_hi"], b["true_lo"], b["true_hi"], log=True)
    return b


def score(probes: pd.DataFrame, trains: pd.DataFrame) -> dict:
    """Confusion counts, METRICS and the mean boundary distances over σ_w² covered by both."""
    s = scored(match(probes, trains))
    c = confusion(s["predicted"].astype(bool), s["trainable"].astype(bool))
    out = dict(**c, n_scored=len(s), **metrics(c))
    b = boundary_table(probes, trains, n_boot=0).dropna(subset=["pred_lo", "true_lo"])
    out["boundary_distance_depth"] = float(b["distance_depth"].mean()) if len(b) else float("nan")
    out["boundary_distance_log_depth"] = float(b["distance_log_depth"].mean()) if len(b) else float("nan")
    out["n_boundary_sigma_w2"] = len(b)
    return out


def _resample(df: pd.DataFrame, seeds, draw) -> pd.DataFrame:
    # Seed k of the bootstrap sample is a copy of drawn seed s, relabelled k so repeats stay distinct trials.
    parts = [df[df["seed"] == s].assign(seed=k) for k, s in enumerate(draw)]
    return pd.concat(parts, ignore_index=True) if parts else df.iloc[:0]


def bootstrap(probes: pd.DataFrame, trains: pd.DataFrame, n_boot: int = 200, ci: float = 0.95, rng=0) -> dict:
    """Percentile intervals {metric: (lo, hi)} from resampling seeds with replacement; {} for fewer than 2 seeds."""
    seeds = sorted(set(probes["seed"]) | set(trains["seed"]))
    if len(seeds) < 2 or n_boot < 1:
        return {}
    rng = np.random.default_rng(rng)
    keys = METRICS + ["boundary_distance_depth", "boundary_distance_log_depth"]
    vals = {k: [] for k in keys}
    for _ in range(n_boot):
        draw = rng.choice(seeds, size=len(seeds))
        s = score(_resample(probes, seeds, draw), _resample(trains, seeds, draw))
        for k in keys:
            vals[k].append(s[k])
    q = [(1 - ci) / 2, (1 + ci) / 2]
    return {k: tuple(float(x) for x in np.nanquantile(v, q)) if np.isfinite(v).any() else (np.nan, np.nan)
            for k, v in vals.items()}


def cost(probes: pd.DataFrame, trains: pd.DataFrame, matched: pd.DataFrame) -> pd.DataFrame:
    """Compute-seconds (the rows' wall `seconds`) of probing vs training: on the scored points, and on the grid.

    On the scored points the probe cost is that of the deepest probes their predictions read (one probe
    covers all shallower depths); `deepest only` is what the grid's probes would cost without the shallower
    probes the prefix property makes redundant.
    """
    s = scored(matched)
    used = seed_boundaries(probes).merge(
        probes[KEYS + ["seed", "depth", "seconds"]].rename(columns={"depth": "probe_depth"}),
        on=KEYS + ["seed", "probe_depth"], how="left")
    by_seed = used.merge(s[KEYS + ["seed"]].drop_duplicates(), on=KEYS + ["seed"])
    # trials predicted from the median read every seed's deepest probe at that σ_w²
    med = s[s["pred_source"] == "median"][KEYS].drop_duplicates().merge(used, on=KEYS)
    used_cov = pd.concat([by_seed, med]).drop_duplicates(subset=KEYS + ["seed"])
    rows = [("points both cover", len(used_cov), used_cov["seconds"].sum(), len(s), s["seconds"].sum()),
            ("whole grid", len(probes), probes["seconds"].sum(), len(trains), trains["seconds"].sum()),
            ("whole grid, deepest probes only", len(used), used["seconds"].sum(), len(trains),
             trains["seconds"].sum())]
    out = pd.DataFrame(rows, columns=["scope", "n_probes", "probe_seconds", "n_train", "train_seconds"])
    out["saving_factor"] = out["train_seconds"] / out["probe_seconds"].where(out["probe_seconds"] > 0)
    return out
