"""Score the probe prediction against training on the points both cover, and measure what it cost.

The unit scored is one training trial (group, σ_w², depth, seed). Its prediction comes from the probe of the
same seed at that (group, σ_w²), which has the very same initial weights, when there is one; otherwise from
the median cutoff over the probe seeds. Trials whose verdict or prediction is unknown are not scored.
Uncertainty: a cluster bootstrap over seeds (resample whole seeds, probes and training together).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from .boundary import boundary_keys, gap, predict, predicted_boundary, seed_boundaries, true_boundary
from .frames import group_keys

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
        return pd.DataFrame(columns=boundary_keys() + ["depth", "seed", "trainable", "seconds", "pred_lo", "pred_hi", "predicted",
                                     "pred_source"])
    sb = seed_boundaries(probes)
    pb = predicted_boundary(probes, n_boot=0)[boundary_keys() + ["pred_lo", "pred_hi"]]
    t = trains[boundary_keys() + ["depth", "seed", "trainable", "seconds"]]
    m = t.merge(sb[boundary_keys() + ["seed", "pred_lo", "pred_hi"]], on=boundary_keys() + ["seed"], how="left")
    m = m.merge(pb, on=boundary_keys(), how="left", suffixes=("", "_median"))
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
    b = pb.merge(tb, on=boundary_keys(), how="outer", suffixes=("_pred", "_true"))
    b["distance_depth"] = gap(b["pred_lo"], b["pred_hi"], b["true_lo"], b["true_hi"])
    b["distance_log_depth"] = gap(b["pred_lo"], b["pred_hi"], b["true_lo"], b["true_hi"], log=True)
    # the probes' convergence: False when any seed's cutoff moved between its last two checkpoints
    known, bad = b["n_converged_known"].fillna(0), b["n_not_converged"].fillna(0)
    b["converged"] = pd.Series([None if k == 0 else bool(n == 0) for k, n in zip(known, bad)], index=b.index,
                               dtype=object)
    return b


# Epoch budgets the true boundary is given at (`true_boundary_by_epochs`): 1-2-5 steps per decade.
def epoch_budgets(largest) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to `largest`, plus `largest` itself when it is not in that sequence."""
    if largest is None or not np.isfinite(largest) or largest < 1:
        return []
    largest, out, dec = int(largest), [], 1
    while dec <= largest:
        out += [m * dec for m in (1, 2, 5) if m * dec <= largest]
        dec *= 10
    return out if out[-1] == largest else out + [largest]


def round_sigma(v) -> float:
    """σ_w² as the report prints it (3 significant digits), as a number."""
    return float(f"{float(v):.3g}")


def true_boundary_by_epochs(trains: pd.DataFrame, threshold: float | None = None, budgets=None) -> list[dict]:
    """The true boundary at several epoch budgets from one set of stored accuracy curves (anytime verdicts,
    frames.train_verdicts): one record per budget E and (group, σ_w²) with a known verdict at E,
    {"epochs": E, <group_keys()>, "sigma_w2", "lower", "upper", "censored", "predicted"}. `lower` = the deepest
    trained depth that is trainable below the first untrainable one (boundary_table's true_lo), `upper` = that
    first untrainable depth (None, with censored True, when every trained depth with a known verdict passed);
    `predicted`: that untrainable verdict is the stop rule's prediction, not observed. `budgets`: default
    `epoch_budgets` up to the largest epoch budget trained. `trains`: stored rows (or an Analysis's `trains`);
    `threshold` None: each row's own."""
    from .frames import train_verdicts

    if trains is None or not len(trains):
        return []
    if budgets is None:
        ok = trains[~trains["status"].eq("error")] if "status" in trains else trains
        budgets = epoch_budgets(pd.to_numeric(ok["epochs"], errors="coerce").max())
    out = []
    for E in budgets:
        tb = true_boundary(train_verdicts(trains, threshold, [], epochs=int(E)))
        for r in tb.sort_values(boundary_keys()).itertuples(index=False):
            d = r._asdict()
            upper = None if bool(d["censored"]) else float(d["true_hi"] + 1)
            out.append({"epochs": int(E), **{k: _plain(d[k]) for k in group_keys()}, "sigma_w2": round_sigma(d["sigma_w2"]),
                        "lower": float(d["true_lo"]), "upper": upper, "censored": bool(d["censored"]),
                        "predicted": upper is not None and bool(d["upper_predicted"])})
    return out


def _plain(v):
    if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


class _Scorer:
    """The scoring of `score` on integer-coded numpy arrays, so the seed bootstrap (hundreds of re-scorings)
    costs milliseconds, not pandas merges. Same rules as match/true_boundary/boundary_table (tested equal)."""

    def __init__(self, probes: pd.DataFrame, trains: pd.DataFrame):
        sb, t = seed_boundaries(probes), trains[trains["trainable"].notna()]
        self.seeds = sorted(set(sb["seed"]) | set(t["seed"]))
        keys = pd.concat([sb[boundary_keys()], t[boundary_keys()]]).drop_duplicates().reset_index(drop=True)
        code = lambda d: keys.reset_index().merge(d[boundary_keys()], on=boundary_keys(), how="right")["index"].to_numpy()  # noqa: E731
        self.nk, sidx = len(keys), {s: i for i, s in enumerate(self.seeds)}
        self.P = np.full((2, self.nk, max(len(self.seeds), 1)), np.nan)  # [lo/hi, key, seed]
        if len(sb):
            ks, ss = code(sb), sb["seed"].map(sidx).to_numpy()
            self.P[0, ks, ss], self.P[1, ks, ss] = sb["pred_lo"], sb["pred_hi"]
        self.tk, self.td = (code(t), t["depth"].to_numpy(float)) if len(t) else (np.zeros(0, int), np.zeros(0))
        self.ty = t["trainable"].to_numpy(bool)
        ts = t["seed"].map(sidx).to_numpy()
        self.by_seed = [np.flatnonzero(ts == i) for i in range(len(self.seeds))]

    def run(self, draw=None) -> dict:
        draw = np.arange(len(self.seeds)) if draw is None else np.asarray(draw)
        P = self.P[:, :, draw] if len(draw) else self.P[:, :, :0]
        with warnings.catch_warnings():  # all-NaN keys (no probe) are expected: they stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(P, axis=2) if P.shape[2] else np.full(P.shape[:2], np.nan)  # (2, nk)
        idx = [self.by_seed[s] for s in draw]
        k_of = np.concatenate([np.full(len(i), k) for k, i in enumerate(idx)]) if idx else np.zeros(0, int)
        i = np.concatenate(idx) if idx else np.zeros(0, int)
        k, d, y = self.tk[i], self.td[i], self.ty[i]
        lo, hi = P[0, k, k_of], P[1, k, k_of]
        own = ~np.isnan(lo)
        lo, hi = np.where(own, lo, med[0, k]), np.where(own, hi, med[1, k])
        known = (d <= lo) | (d > hi)  # NaN bounds compare False: no prediction
        c = confusion((d <= lo)[known], y[known])
        out = dict(**c, n_scored=int(known.sum()), **metrics(c))
        # true boundary per key: majority verdict per (key, depth), then the first failure walking upwards
        kd, inv = np.unique(np.stack([k, d]), axis=1, return_inverse=True) if len(k) else (np.zeros((2, 0)), i)
        frac = np.bincount(inv.ravel(), y, len(kd[0])) / np.bincount(inv.ravel(), minlength=len(kd[0]))
        kk, dd, ok = kd[0].astype(int), kd[1], frac >= 0.5
        first_bad = np.full(self.nk, np.inf)
        np.minimum.at(first_bad, kk[~ok], dd[~ok])
        tlo = np.full(self.nk, np.nan)
        np.fmax.at(tlo, kk, np.where(ok & (dd < first_bad[kk]), dd, 0.0))
        both = ~np.isnan(tlo) & ~np.isnan(med[0])
        args = (med[0][both], med[1][both], tlo[both], (first_bad - 1)[both])
        out["boundary_distance_depth"] = float(gap(*args).mean()) if both.any() else float("nan")
        out["boundary_distance_log_depth"] = float(gap(*args, log=True).mean()) if both.any() else float("nan")
        out["n_boundary_sigma_w2"] = int(both.sum())
        return out


def score(probes: pd.DataFrame, trains: pd.DataFrame) -> dict:
    """Confusion counts, METRICS and the mean boundary distances over the σ_w² covered by both."""
    return _Scorer(probes, trains).run()


def bootstrap(probes: pd.DataFrame, trains: pd.DataFrame, n_boot: int = 1000, ci: float = 0.95, rng=0) -> dict:
    """Percentile intervals {metric: (lo, hi)} from resampling seeds with replacement; {} unless the training
    trials (with known verdicts) have at least 2 seeds. L*'s own interval over probe seeds is predicted_boundary's."""
    sc = _Scorer(probes, trains)
    # with one training seed every resample scores the same trials: an interval would only look precise
    if len(set(trains.loc[trains["trainable"].notna(), "seed"])) < 2 or n_boot < 1:
        return {}
    rng = np.random.default_rng(rng)
    keys = METRICS + ["boundary_distance_depth", "boundary_distance_log_depth"]
    runs = [sc.run(rng.integers(len(sc.seeds), size=len(sc.seeds))) for _ in range(n_boot)]
    q = [(1 - ci) / 2, (1 + ci) / 2]
    out = {}
    for k in keys:
        v = np.array([r[k] for r in runs], float)
        out[k] = tuple(float(x) for x in np.quantile(v[np.isfinite(v)], q)) if np.isfinite(v).any() else (
            float("nan"), float("nan"))
    return out


def cost(probes: pd.DataFrame, trains: pd.DataFrame, matched: pd.DataFrame) -> pd.DataFrame:
    """Compute-seconds (the rows' wall `seconds`) of probing vs training: on the scored points, and on the grid.

    On the scored points the probe cost is that of the deepest probes their predictions read (one probe
    covers all shallower depths); `deepest only` is what the grid's probes would cost without the shallower
    probes the prefix property makes redundant.
    """
    s = scored(matched)
    used = seed_boundaries(probes).merge(
        probes[boundary_keys() + ["seed", "depth", "seconds"]].rename(columns={"depth": "probe_depth"}),
        on=boundary_keys() + ["seed", "probe_depth"], how="left")
    if len(s) and len(used):
        by_seed = used.merge(s[boundary_keys() + ["seed"]].drop_duplicates(), on=boundary_keys() + ["seed"])
        # trials predicted from the median read every seed's deepest probe at that σ_w²
        med = s[s["pred_source"] == "median"][boundary_keys()].drop_duplicates().merge(used, on=boundary_keys())
    else:  # nothing scored (an empty frame's key columns may not even merge)
        by_seed = med = used.iloc[:0]
    used_cov = pd.concat([by_seed, med]).drop_duplicates(subset=boundary_keys() + ["seed"])
    rows = [("points both cover", len(used_cov), used_cov["seconds"].sum(), len(s), s["seconds"].sum()),
            ("whole grid", len(probes), probes["seconds"].sum(), len(trains), trains["seconds"].sum()),
            ("whole grid, deepest probes only", len(used), used["seconds"].sum(), len(trains),
             trains["seconds"].sum())]
    out = pd.DataFrame(rows, columns=["scope", "n_probes", "probe_seconds", "n_train", "train_seconds"])
    out["saving_factor"] = out["train_seconds"] / out["probe_seconds"].where(out["probe_seconds"] > 0)
    out["compares"] = [
        f"like with like: the same {len(s)} (σ_w², depth) questions, answered by the probes their predictions read "
        "and by training",
        "everything stored, not the same questions: a probe answers every depth up to its own, a training one",
        "as above, without the shallower probes that the deepest one makes redundant (prefix property)"]
    return out


def resolution_cost(boundaries: pd.DataFrame, trains: pd.DataFrame) -> pd.DataFrame:
    """Trainings used against a uniform depth grid that would bracket the true boundary as finely.

    Per group: the columns (σ_w²) with a bracketed boundary, their bracket widths (true_hi - true_lo + 1
    candidate depths), and the trainings a grid of one depth every `width` layers over the trained range
    (shallowest … deepest trained depth, generous to the grid) needs to give every column that median and
    that worst width."""
    cols = ["group", "columns", "trainings", "depth_range", "median_bracket", "max_bracket",
            "grid_same_median", "grid_same_max"]
    b = boundaries.dropna(subset=["true_lo"]) if len(boundaries) else boundaries
    rows = []
    if len(b) and len(trains):
        from .frames import group_label

        for key, g in b.groupby(group_keys(), dropna=False, sort=True):
            t = trains.merge(g[boundary_keys()], on=boundary_keys())
            finite = g[np.isfinite(g["true_hi"].astype(float))]
            if not len(t) or not len(finite):
                continue
            width = (finite["true_hi"] - finite["true_lo"] + 1).clip(lower=1)
            lo, hi = int(t["depth"].min()), int(t["depth"].max())
            per = lambda w: int(len(g) * math.ceil((hi - lo + 1) / max(float(w), 1.0)))  # noqa: E731
            rows.append((group_label(key if isinstance(key, tuple) else (key,)), len(g), len(t), f"{lo} … {hi}",
                         float(width.median()), float(width.max()), per(width.median()), per(width.max())))
    return pd.DataFrame(rows, columns=cols)
