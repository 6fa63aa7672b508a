"""The three boundaries L*(σ_w²): predicted by the probes, measured by training, and mean-field theory.

Every boundary is an interval [lo, hi] of depths, because each source only resolves it so far:
- predicted: lo = hi = cutoff of the deepest probe; when the probe saw no plateau, [its depth, ∞).
- true: lo = the deepest trainable depth below the first untrainable one, hi = (first untrainable) - 1;
  the trained depths are a grid, so the truth is only known to lie in between. All trainable: [max, ∞).
- theory: the point 6·ξ_c(σ_w², σ_b²) of reconent.theory, where the arch has that mean field
  (archs.Arch.mean_field: the MLP and the fan-in CNN, not the ResNet).
Distances between boundaries are gaps between intervals (0 when they overlap), so a coarse training grid
is not counted against the prediction.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reconent.science import theory
from .frames import group_keys, not_converged

def boundary_keys() -> list[str]:
    """A group and its σ_w²: one boundary point."""
    return group_keys() + ["sigma_w2"]


def _gkey(df):
    return df.groupby(boundary_keys(), dropna=False, sort=True)


def deepest_probes(probes: pd.DataFrame) -> pd.DataFrame:
    """One row per (group, σ_w², seed): the deepest probe. By the prefix property its profile contains every
    shallower probe's, so its cutoff speaks for all depths up to its own."""
    if not len(probes):
        return probes
    p = probes.reset_index(drop=True)
    idx = p.sort_values("depth", kind="stable").groupby(boundary_keys() + ["seed"], dropna=False, sort=False).tail(1).index
    return p.loc[idx].sort_values(boundary_keys() + ["seed"])


def seed_boundaries(probes: pd.DataFrame) -> pd.DataFrame:
    """Per (group, σ_w², seed): predicted interval [pred_lo, pred_hi] from the deepest probe."""
    d = deepest_probes(probes)
    out = d[boundary_keys() + ["seed", "depth", "cutoff", "censored"]].rename(columns={"depth": "probe_depth"}).copy()
    out["pred_lo"] = np.where(out["censored"], out["probe_depth"], out["cutoff"]).astype(float)
    out["pred_hi"] = np.where(out["censored"], np.inf, out["cutoff"]).astype(float)
    # the probe's own convergence (frames.probe_cutoffs): its cutoff at the last two checkpoints
    conv = d["converged"] if "converged" in d else pd.Series(None, index=d.index, dtype=object)
    out["converged"] = conv.to_numpy()
    out["not_converged"] = not_converged(conv)
    out["converged_known"] = [c is not None and not pd.isna(c) for c in conv]
    return out.reset_index(drop=True)


def predicted_boundary(probes: pd.DataFrame, n_boot: int = 1000, ci: float = 0.95, rng=0,
                       seeds: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (group, σ_w²): predicted L* = median over seeds of the deepest probe's cutoff (`pred_lo`, `pred_hi`
    the median interval), with a bootstrap percentile interval over seeds (`ci_lo`, `ci_hi`; NaN for one seed),
    and how many seeds' cutoffs had not converged between the last two checkpoints (`n_not_converged`, out of
    `n_converged_known` seeds with two checkpoints). `seeds`: seed_boundaries(probes) when already computed.

    Predicted trainable(σ_w², depth) = depth <= L*; untrainable when depth > pred_hi; unknown in between
    (only when the probe saw no plateau and depth is beyond the probe).
    """
    sb = seed_boundaries(probes) if seeds is None else seeds
    g = sb.groupby(boundary_keys(), dropna=False, sort=True)
    out = g.agg(pred_lo=("pred_lo", "median"), pred_hi=("pred_hi", "median"), n_seeds=("seed", "size"),
                probe_depth=("probe_depth", "max"), n_not_converged=("not_converged", "sum"),
                n_converged_known=("converged_known", "sum")).reset_index()
    out[["n_not_converged", "n_converged_known"]] = out[["n_not_converged", "n_converged_known"]].astype(int)
    out["censored"] = np.isinf(out["pred_hi"])
    out["ci_lo"] = out["ci_hi"] = np.nan
    if n_boot > 0 and (out["n_seeds"] > 1).any():
        rng = np.random.default_rng(rng)
        for i, (_, lo) in enumerate(g["pred_lo"]):
            if len(lo) > 1:
                boots = np.median(rng.choice(lo.to_numpy(), size=(n_boot, len(lo))), axis=1)
                out.loc[i, ["ci_lo", "ci_hi"]] = np.quantile(boots, [(1 - ci) / 2, (1 + ci) / 2])
    return out[boundary_keys() + ["pred_lo", "pred_hi", "ci_lo", "ci_hi", "n_seeds", "probe_depth", "censored",
                       "n_not_converged", "n_converged_known"]]


def predict(pred_lo: float, pred_hi: float, depth) -> object:
    """True / False / NaN (unknown) for a depth against a predicted interval."""
    return True if depth <= pred_lo else (False if depth > pred_hi else np.nan)


def depth_verdicts(trains: pd.DataFrame) -> pd.DataFrame:
    """Per (group, σ_w², depth): the fraction of seeds with a known verdict that trained, and the majority
    verdict (trainable when at least half of them trained; NaN when no seed has a known verdict); `predicted`:
    an untrainable verdict of a seed there is the stop rule's prediction (frames.train_verdicts)."""
    t = trains[trains["trainable"].notna()].assign(trainable=lambda d: d["trainable"].astype(float))
    if "verdict_predicted" not in t:
        t = t.assign(verdict_predicted=False)
    g = t.groupby(boundary_keys() + ["depth"], dropna=False, sort=True)
    out = g.agg(frac=("trainable", "mean"), n=("trainable", "size"), predicted=("verdict_predicted", "any")).reset_index()
    out["trainable"] = out["frac"] >= 0.5
    return out


def true_boundary(trains: pd.DataFrame) -> pd.DataFrame:
    """Per (group, σ_w²): walking the trained depths upwards, `true_lo` = the deepest trainable depth before the
    first untrainable one (0 if the shallowest is untrainable), `true_hi` = first untrainable - 1 (∞ if none).
    `n_violations` counts trainable depths above the first untrainable one (a non-monotone column);
    `upper_predicted`: the first untrainable depth's verdict rests on a run the stop rule ended (predicted)."""
    dv = depth_verdicts(trains)
    cols = boundary_keys() + ["true_lo", "true_hi", "n_depths", "censored", "n_violations", "upper_predicted"]
    if not len(dv):
        return pd.DataFrame(columns=cols)
    bad = dv["depth"].where(~dv["trainable"], np.inf)
    dv["first_bad"] = bad.groupby([dv[k] for k in boundary_keys()], dropna=False).transform("min")
    below = dv["trainable"] & (dv["depth"] < dv["first_bad"])
    dv["lo"], dv["viol"] = dv["depth"].where(below, 0.0), dv["trainable"] & (dv["depth"] > dv["first_bad"])
    dv["upper_predicted"] = dv["predicted"].astype(bool) & (dv["depth"] == dv["first_bad"])
    out = dv.groupby(boundary_keys(), dropna=False, sort=True).agg(
        true_lo=("lo", "max"), first_bad=("first_bad", "min"), n_depths=("depth", "size"),
        n_violations=("viol", "sum"), upper_predicted=("upper_predicted", "any")).reset_index()
    out["true_lo"] = out["true_lo"].astype(float)
    out["true_hi"] = out["first_bad"] - 1
    out["censored"] = np.isinf(out["first_bad"])
    return out[cols]


def _mean_field(arch: str | None) -> bool:
    """Whether the fully connected mean field describes `arch` (archs.Arch.mean_field); unknown archs: no."""
    from reconent.science import archs

    try:
        return arch is None or archs.get(arch).mean_field
    except ValueError:
        return False


def theory_depth(sigma_w2, sigma_b2: float, activation: str, factor: float = 6.0, arch: str | None = None):
    """factor·ξ_c from reconent.theory (NaN where the activation or the arch has no mean-field model)."""
    if not _mean_field(arch):
        return np.full(np.shape(sigma_w2), np.nan) if np.ndim(sigma_w2) else math.nan
    if np.ndim(sigma_w2):  # value by value: one σ_w² outside the theory (0, at a figure's edge) blanks only itself
        return np.array([theory_depth(float(v), sigma_b2, activation, factor, arch) for v in np.ravel(sigma_w2)]
                        ).reshape(np.shape(sigma_w2))
    try:
        return theory.trainable_depth(sigma_w2, sigma_b2, activation, factor=factor)
    except ValueError:
        return math.nan


def critical(sigma_b2: float, activation: str, arch: str | None = None) -> float:
    if not _mean_field(arch):
        return math.nan
    try:
        return theory.critical_sigma_w2(sigma_b2, activation)
    except ValueError:
        return math.nan


def theory_boundary(points: pd.DataFrame, factor: float = 6.0) -> pd.DataFrame:
    """Per (group, σ_w²) present in `points`: theory_depth = factor·ξ_c and the group's critical σ_w²,
    computed from each group's own σ_b² (the CNN's σ_b² ≈ 2e-5 included) and activation."""
    keys = points[boundary_keys()].drop_duplicates().sort_values(boundary_keys()).reset_index(drop=True)
    keys["theory_depth"] = [float(theory_depth(w, b, a, factor, arch)) for w, b, a, arch in
                            zip(keys["sigma_w2"], keys["sigma_b2"], keys["activation"], keys["arch"])]
    keys["critical_sigma_w2"] = [critical(b, a, arch) for b, a, arch in
                                 zip(keys["sigma_b2"], keys["activation"], keys["arch"])]
    return keys


def _logd(x):
    return np.log(np.maximum(np.asarray(x, float), 1.0))  # depth 0 (nothing trains) floored at 1


def gap(a_lo, a_hi, b_lo, b_hi, log: bool = False):
    """Distance between depth intervals [a_lo, a_hi] and [b_lo, b_hi]; 0 when they overlap."""
    f = _logd if log else (lambda x: np.asarray(x, float))
    a_lo, a_hi, b_lo, b_hi = f(a_lo), f(a_hi), f(b_lo), f(b_hi)
    with np.errstate(invalid="ignore"):
        return np.maximum(0.0, np.maximum(a_lo - b_hi, b_lo - a_hi))


def posterior_boundary(trains: pd.DataFrame, boundaries: pd.DataFrame) -> pd.DataFrame:
    """`boundaries` with the boundary search's model of L (reconent.sweep.search.boundary: noisy labels near the
    boundary, the probes' prediction as prior) fitted to the trained verdicts of each (group, σ_w²), whichever way
    the depths were chosen: `post_median` and the 80% credible interval `post_lo` … `post_hi` (NaN without
    training). The model's range is depth 1 … the deepest trained depth of the group (it cannot see beyond)."""
    from reconent.sweep.search.boundary import Model, Prior

    out = boundaries.assign(post_median=np.nan, post_lo=np.nan, post_hi=np.nan)
    t = trains[trains["trainable"].notna()] if len(trains) else trains
    if not len(t) or not len(out):
        return out
    gkeys = [k for k in boundary_keys() if k != "sigma_w2"]

    def rows_of(df, r, keys):
        m = np.ones(len(df), bool)
        for k in keys:
            m &= (df[k].isna() & pd.isna(r[k])).to_numpy() | (df[k] == r[k]).to_numpy()
        return df[m]

    for i, r in out.iterrows():
        col = rows_of(t, r, boundary_keys())
        if not len(col):
            continue
        model = Model(1, int(rows_of(t, r, gkeys)["depth"].max()))
        prior = Prior(float(r["pred_lo"]), bool(r.get("censored_pred", False))) if pd.notna(r.get("pred_lo")) else None
        post = model.posterior(model.prior(prior), zip(col["depth"], col["trainable"].astype(bool)))
        s = model.summary(post, 0)
        out.loc[i, ["post_median", "post_lo", "post_hi"]] = s["median"], s["lo"], s["hi"]
    return out
