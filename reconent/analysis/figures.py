"""Report figures, one set per group (dataset, arch, activation, width/channels, σ_b²). Agg backend, files only."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from .boundary import critical, deepest_probes, depth_verdicts, theory_depth  # noqa: E402
from .frames import group_keys, group_label, per_layer  # noqa: E402

TRUE_C, FALSE_C, PRED_C, THEORY_C, CRIT_C = "#2ca02c", "#d62728", "white", "#ff7f0e", "#bbbbbb"
NOTCONV_C = "#e377c2"  # ring around a predicted point whose probe cutoff had not converged


def _not_converged(b: pd.DataFrame) -> pd.DataFrame:
    """The boundary rows (with a prediction) whose probe cutoff moved between its last two checkpoints."""
    if "n_not_converged" not in b:
        return b.iloc[:0]
    return b[b["n_not_converged"].fillna(0).astype(int) > 0]


def _sel(df: pd.DataFrame, key) -> pd.DataFrame:
    m = np.ones(len(df), bool)
    for c, v in zip(group_keys(), key):
        m &= (df[c].isna() & pd.isna(v)).to_numpy() | (df[c] == v).to_numpy()
    return df[m]


def _logx(x) -> bool:
    """σ_w² grids spanning a decade or more read better on a log axis (both phases get room)."""
    x = np.asarray(x, float)
    return len(x) > 2 and x.min() > 0 and x.max() / x.min() >= 8


def _sigma_ticks(ax, xs, log: bool) -> None:
    if not log:
        return
    if len(xs) <= 12:  # label the swept values themselves; 10^0-style ticks say little about a σ_w² grid
        ax.set_xticks(xs, [f"{x:g}" for x in xs], minor=False)
        ax.set_xticks([], minor=True)
    else:  # more values than fit as labels (31 in analysis/phase_diagram): 0.1, 0.2, 0.5, 1, 2, 5, ...
        from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())


def _edges(x, log: bool = False) -> np.ndarray:
    """Cell edges around sorted centres x (midpoints, in log space on a log axis; outer cells mirror)."""
    x = np.log(np.asarray(x, float)) if log else np.asarray(x, float)
    if len(x) == 1:
        e = np.array([x[0] - 0.1, x[0] + 0.1])
    else:
        mid = (x[1:] + x[:-1]) / 2
        e = np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])
    return np.exp(e) if log else e


def entropy_heatmap(fig, ax, probes: pd.DataFrame, column: str, label: str, cmap: str = "viridis",
                    log: bool | None = False, shrink: float = 0.9):
    """Draw the deepest probes' per-layer `column` over (σ_w², depth) on `ax` with its colour bar (a log colour
    scale for a relative entropy spanning more than 20×); returns (σ_w² values, layers, cell edges in σ_w²).
    `log`: cells on a log σ_w² axis; None decides by the grid's span (_logx)."""
    xs, ls, Z = layer_grid(probes, column)
    log = _logx(xs) if log is None else log
    pos = Z[np.isfinite(Z)]
    pos = pos[pos > 0]
    lognorm = column.startswith("relative") and len(pos) and pos.max() / pos.min() > 20
    norm = LogNorm(pos.min(), pos.max()) if lognorm else Normalize(np.nanmin(Z), np.nanmax(Z))
    xe = _edges(xs, log)
    m = ax.pcolormesh(xe, np.arange(0.5, ls.max() + 1), np.ma.masked_invalid(Z), cmap=cmap, norm=norm, shading="flat")
    fig.colorbar(m, ax=ax, label=label, shrink=shrink)
    return xs, ls, xe


def layer_grid(probes: pd.DataFrame, column: str):
    """(σ_w² values, layers, matrix[layer, σ_w²]) of the median over seeds of the deepest probe's per-layer
    `column`, layers in units of depth; a prefix of the deepest profile is every shallower probe's profile."""
    lay = per_layer(deepest_probes(probes))
    lay = lay[lay["depth_index"] >= 1]  # the cnn/resnet stem sits below depth 1
    tab = lay.groupby(["depth_index", "sigma_w2"])[column].median().unstack("sigma_w2")
    return tab.columns.to_numpy(float), tab.index.to_numpy(int), tab.to_numpy(float)


def _overlays(ax, a, key, ymax: float, xlim, log: bool = False) -> None:
    b = _sel(a.boundaries, key).sort_values("sigma_w2")
    sb2, act, arch = (key[group_keys().index(c)] for c in ("sigma_b2", "activation", "arch"))
    xs = np.geomspace(*xlim, 400) if log else np.linspace(*xlim, 400)
    th = theory_depth(xs, sb2, act, arch=arch)
    ax.plot(xs, np.where(th <= ymax * 1.05, th, np.nan), color=THEORY_C, lw=2, ls="--", zorder=3)
    xc = critical(sb2, act, arch)
    if xlim[0] <= xc <= xlim[1]:
        ax.axvline(xc, color=CRIT_C, ls=":", lw=1.5, zorder=3)
    pb = b.dropna(subset=["pred_lo"])
    if len(pb):
        y = np.minimum(pb["pred_lo"], ymax)
        ax.plot(pb["sigma_w2"], y, color="black", lw=3.2, zorder=4)
        ax.plot(pb["sigma_w2"], y, color=PRED_C, lw=1.6, marker="D", ms=5, mec="black", zorder=5)
        cens = pb[pb["censored_pred"].astype(bool)]
        ax.plot(cens["sigma_w2"], np.minimum(cens["pred_lo"], ymax), ls="none", marker="^", ms=9, color=PRED_C,
                mec="black", zorder=6)
        ci = pb.dropna(subset=["ci_lo"])
        ax.errorbar(ci["sigma_w2"], ci["pred_lo"], yerr=[ci["pred_lo"] - ci["ci_lo"], ci["ci_hi"] - ci["pred_lo"]],
                    fmt="none", ecolor="black", capsize=3, zorder=5)
        nc = _not_converged(pb)
        ax.plot(nc["sigma_w2"], np.minimum(nc["pred_lo"], ymax), ls="none", marker="o", ms=15, mfc="none",
                mec=NOTCONV_C, mew=2.5, zorder=6)
    dv = depth_verdicts(_sel(a.trains, key))
    for ok, mk, col in ((True, "o", TRUE_C), (False, "X", FALSE_C)):
        d = dv[dv["trainable"] == ok]
        ax.scatter(d["sigma_w2"], d["depth"], marker=mk, s=46, c=col, edgecolors="white", linewidths=0.8, zorder=7)
    unk = _sel(a.trains, key)
    unk = unk[unk["trainable"].isna()]
    ax.scatter(unk["sigma_w2"], unk["depth"], marker="o", s=46, facecolors="none", edgecolors="grey", zorder=7)


def _legend_handles(a, key):
    has_unknown = _sel(a.trains, key)["trainable"].isna().any()
    h = [Line2D([], [], color=PRED_C, marker="D", mec="black", lw=1.6, path_effects=None,
                label="predicted boundary L* (probe cutoff)"),
         Line2D([], [], color=THEORY_C, ls="--", lw=2, label="theory 6·ξ_c"),
         Line2D([], [], color=CRIT_C, ls=":", lw=1.5, label="critical σ_w² (χ₁ = 1)"),
         Line2D([], [], ls="none", marker="o", ms=8, color=TRUE_C, mec="white", label="trained: trainable"),
         Line2D([], [], ls="none", marker="X", ms=9, color=FALSE_C, mec="white", label="trained: untrainable")]
    if has_unknown:
        h.append(Line2D([], [], ls="none", marker="o", mfc="none", mec="grey", label="trained: unknown (censored)"))
    if _sel(a.boundaries, key).get("censored_pred", pd.Series(dtype=bool)).fillna(False).astype(bool).any():
        h.append(Line2D([], [], ls="none", marker="^", color=PRED_C, mec="black", label="no plateau: L* ≥ probe depth"))
    if len(_not_converged(_sel(a.boundaries, key))):
        h.append(_notconv_handle())
    return h


def _notconv_handle():
    return Line2D([], [], ls="none", marker="o", ms=11, mfc="none", mec=NOTCONV_C, mew=2.5,
                  label="cutoff not converged")


def phase_figure(a, key, path) -> bool:
    """Heatmaps over (σ_w², depth) of the relative and differential entropy with all boundaries overlaid."""
    p = _sel(a.probes, key)
    panels = [(c, lab) for c, lab in (("relative_entropy_median", "relative entropy $S_\\ell$ (nats, median)"),
                                      ("differential_entropy", "differential entropy $H_\\ell$ (nats)"))
              if c in p and p[c].notna().any()]
    if not panels and len(p):  # read at a checkpoint: only the normalised profile exists at that budget
        panels = [("relative_entropy_norm_median", "normalised relative entropy $S_\\ell/S_L$ (median)")]
    if not len(p) or not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 5.4), squeeze=False,
                             constrained_layout=True)
    for ax, (col, lab) in zip(axes[0], panels):
        xs, ls, xe = entropy_heatmap(fig, ax, p, col, lab, log=None)
        log = _logx(xs)
        ymax = float(max(ls.max(), _sel(a.trains, key)["depth"].max() if len(_sel(a.trains, key)) else 0))
        _overlays(ax, a, key, ymax, (xe[0], xe[-1]), log)
        ax.set(xscale="log" if log else "linear")
        _sigma_ticks(ax, xs, log)
        ax.set(xlim=(xe[0], xe[-1]), ylim=(0.5, ymax + 0.5), xlabel="weight variance σ_w² (dimensionless)",
               ylabel="depth L (layers)", title=lab.split(" (")[0])
    fig.legend(handles=_legend_handles(a, key), loc="outside lower center", ncol=3 if len(panels) > 1 else 2,
               fontsize=9, frameon=False)
    fig.suptitle(f"Phase diagram: {group_label(key)}")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def pick_sigmas(xs, crit: float, n: int = 5) -> list[float]:
    """About n σ_w² spread over the swept range, always including the one nearest the critical point."""
    xs = np.unique(np.asarray(xs, float))
    if len(xs) <= n:
        return list(xs)
    pick = {xs[int(round(i))] for i in np.linspace(0, len(xs) - 1, n - 1)}
    if np.isfinite(crit):
        pick.add(xs[np.argmin(abs(xs - crit))])
    return sorted(pick)


def curves_figure(a, key, path) -> bool:
    """S_ℓ (median, interquartile band) and the normalised median that the cutoff reads, for a few σ_w²."""
    p = deepest_probes(_sel(a.probes, key))
    if not len(p) or "relative_entropy_median" not in p:
        return False
    sb2, act, arch = (key[group_keys().index(c)] for c in ("sigma_b2", "activation", "arch"))
    sig = pick_sigmas(p["sigma_w2"], critical(sb2, act, arch))
    colors = plt.cm.plasma(np.linspace(0, 0.85, len(sig)))
    fig, (l, r) = plt.subplots(1, 2, figsize=(12, 5.2), constrained_layout=True)
    rtol = float(p["rtol_used"].iloc[0])
    r.axhspan(1 - rtol, 1 + rtol, color="grey", alpha=0.3, label=f"plateau band 1 ± rtol ({rtol:g})")
    for w, c in zip(sig, colors):
        row = p[p["sigma_w2"] == w].sort_values("seed").iloc[0]  # the first seed: a curve, not an average
        ls = np.arange(1, int(row["n_layers"]) + 1)
        lab = f"σ_w² = {w:g} (cutoff {int(row['cutoff'])})"
        if np.ndim(row["relative_entropy_median"]):  # null when read at a checkpoint (measured at the end only)
            l.plot(ls, row["relative_entropy_median"], color=c, marker=".", label=lab)
        if row.get("relative_entropy_q25") is not None and np.ndim(row.get("relative_entropy_q25")):
            l.fill_between(ls, row["relative_entropy_q25"], row["relative_entropy_q75"], color=c, alpha=0.08)
        r.plot(ls, row["relative_entropy_norm_median"], color=c, marker=".", label=lab)
        k = int(row["cutoff_layer"])
        if 0 < k <= len(ls):
            r.plot(k, row["relative_entropy_norm_median"][k - 1], marker="o", ms=10, mfc="none", mec=c, mew=2)
    stem = int(p["stem"].max())
    xlab = "probe layer ℓ (layers)" + (f"; 1–{stem} = conv stem, cutoff counts blocks after it" if stem else "")
    vals = np.concatenate([np.asarray(v, float) for v in p["relative_entropy_median"] if np.ndim(v)] or [[]])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if len(vals) and vals.max() / vals.min() > 20:  # information loss spans decades: log scale
        l.set_yscale("log")
    if not len(vals):
        l.text(0.5, 0.5, "S_ℓ itself is measured at the final decoder budget only;\n"
               "this budget is read at a checkpoint", ha="center", va="center", transform=l.transAxes, color="grey")
    l.set(xlabel=xlab, ylabel="relative entropy $S_\\ell$ (nats)",
          title="reconstruction entropy (median, IQR band; seed " + f"{int(p['seed'].min())})")
    r.set(xlabel=xlab, ylabel="$S_\\ell / S_L$ (median, dimensionless)",
          title="normalised profile; ○ = cutoff (last layer off the plateau)")
    h, lab = r.get_legend_handles_labels()
    fig.legend(h, lab, loc="outside lower center", ncol=min(3, len(h)), fontsize=9, frameon=False)
    fig.suptitle(f"Entropy vs depth: {group_label(key)}")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def boundary_figure(a, key, path) -> bool:
    """L*(σ_w²): predicted (with bootstrap interval), true (the interval the trained depths allow), theory."""
    b = _sel(a.boundaries, key).sort_values("sigma_w2")
    if not len(b):
        return False
    sb2, act, arch = (key[group_keys().index(c)] for c in ("sigma_b2", "activation", "arch"))
    fig, ax = plt.subplots(figsize=(8, 6), constrained_layout=True)
    log = _logx(b["sigma_w2"])
    e = _edges(np.sort(b["sigma_w2"].unique()), log)
    xlim = (e[0], e[-1])
    top = np.nanmax(np.concatenate([b["probe_depth"].to_numpy(float), b["true_lo"].to_numpy(float),
                                    _sel(a.trains, key)["depth"].to_numpy(float), [1]]))
    ymax = 1.5 * top
    xs = np.geomspace(*xlim, 400) if log else np.linspace(*xlim, 400)
    ax.plot(xs, theory_depth(xs, sb2, act, arch=arch), color=THEORY_C, ls="--", lw=2, label="theory 6·ξ_c")
    xc = critical(sb2, act, arch)
    if xlim[0] <= xc <= xlim[1]:
        ax.axvline(xc, color="grey", ls=":", label=f"critical σ_w² = {xc:.3g}")
    t = b.dropna(subset=["true_lo"])
    if len(t):
        hi = np.minimum(t["true_hi"], ymax)
        ax.vlines(t["sigma_w2"], t["true_lo"], hi, color=TRUE_C, lw=7, alpha=0.45,
                  label="true boundary (between last trainable\nand first untrainable trained depth)")
        ax.plot(t["sigma_w2"], t["true_lo"], ls="none", marker="_", ms=14, mew=2.5, color=TRUE_C)
        up = t[np.isinf(t["true_hi"])]
        if len(up):  # (an empty unclipped artist breaks constrained layout)
            ax.plot(up["sigma_w2"], np.full(len(up), 0.97 * ymax), ls="none", marker="^", ms=10, color=TRUE_C,
                    clip_on=False, label="all trained depths trainable: L* ≥ deepest")
    pb = b.dropna(subset=["pred_lo"])
    if len(pb):
        ax.plot(pb["sigma_w2"], pb["pred_lo"], color="black", marker="D", ms=5, label="predicted L* (probe cutoff)")
        ci = pb.dropna(subset=["ci_lo"])
        if len(ci):
            ax.fill_between(ci["sigma_w2"], ci["ci_lo"], ci["ci_hi"], color="black", alpha=0.15,
                            label="95% bootstrap interval over seeds")
        cens = pb[pb["censored_pred"].astype(bool)]
        if len(cens):
            ax.plot(cens["sigma_w2"], cens["pred_lo"], ls="none", marker="^", ms=9, color="black",
                    label="no plateau: L* ≥ probe depth")
        nc = _not_converged(pb)
        if len(nc):
            ax.plot(nc["sigma_w2"], nc["pred_lo"], ls="none", marker="o", ms=15, mfc="none", mec=NOTCONV_C, mew=2.5,
                    label="probe cutoff not converged\n(moved between the last two checkpoints)")
    ax.set(xscale="log" if log else "linear")
    _sigma_ticks(ax, np.sort(b["sigma_w2"].unique()), log)
    ax.set(xlim=xlim, ylim=(0, ymax), xlabel="weight variance σ_w² (dimensionless)",
           ylabel="maximum trainable depth L* (layers)", title=f"Boundaries: {group_label(key)}")
    fig.legend(loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def budgets_figure(a, key, path) -> bool:
    """The true boundary against σ_w² at several epoch budgets (Analysis.true_boundary_by_epochs): per budget, the
    bracket between the deepest trainable and the first untrainable trained depth as a band, its lower edge as a
    line; ▲ where every trained depth passed (the boundary lies beyond). Log depth axis over more than a decade."""
    rec = pd.DataFrame(a.true_boundary_by_epochs())
    if not len(rec):
        return False
    rec = _sel(rec, key)
    if not len(rec):
        return False
    budgets = sorted(rec["epochs"].unique())
    colors = plt.cm.viridis(np.linspace(0.05, 0.85, len(budgets)))
    fig, ax = plt.subplots(figsize=(8, 6), constrained_layout=True)
    xs_all = np.sort(rec["sigma_w2"].unique())
    log = _logx(xs_all)
    top = float(np.nanmax(np.concatenate([rec["lower"].to_numpy(float), rec["upper"].dropna().to_numpy(float), [1]])))
    ymax = 1.3 * top
    ys = np.concatenate([rec["lower"].to_numpy(float), rec["upper"].dropna().to_numpy(float)])
    ys = ys[ys > 0]
    logy = len(ys) > 0 and ys.max() / ys.min() > 10
    floor = 0.8 if logy else 0.0
    for i, (E, c) in enumerate(zip(budgets, colors)):  # larger budgets thicker and below: equal lines stay visible
        r = rec[rec["epochs"] == E].sort_values("sigma_w2")
        lw, z = 1.6 + 2.4 * i / max(len(budgets) - 1, 1), 10 - i
        lo = np.maximum(r["lower"].to_numpy(float), floor)
        hi = np.where(r["censored"], ymax, np.maximum(r["upper"].to_numpy(float, na_value=np.nan) - 1, lo))
        ax.fill_between(r["sigma_w2"], lo, hi, color=c, alpha=0.18, lw=0)
        ax.plot(r["sigma_w2"], lo, color=c, marker="o", ms=2 + lw, lw=lw, zorder=z,
                label=f"≤ {E} epoch{'s' if E > 1 else ''}")
        cens = r[r["censored"].astype(bool)]
        if len(cens):
            ax.plot(cens["sigma_w2"], np.maximum(cens["lower"], floor), ls="none", marker="^", ms=9, color=c,
                    zorder=z)
    ax.set(xscale="log" if log else "linear", yscale="log" if logy else "linear")
    _sigma_ticks(ax, xs_all, log)
    e = _edges(xs_all, log)
    ax.set(xlim=(e[0], e[-1]), ylim=(floor if logy else 0, ymax), xlabel="weight variance σ_w² (dimensionless)",
           ylabel="true maximum trainable depth (layers)",
           title=f"True boundary by training budget: {group_label(key)}")
    h, lab = ax.get_legend_handles_labels()
    h.append(Line2D([], [], ls="none", marker="^", color="grey", label="all trained depths passed: L* ≥ deepest"))
    fig.legend(handles=h, loc="outside lower center", ncol=min(4, len(h)), fontsize=9, frameon=False)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def search_figure(a, key, path) -> bool:
    """Where training ran and in what order: every trained (σ_w², depth), green trainable / red not, numbered by
    start time (1 = first; an adaptive search's later points crowd the boundary), with the model's L*."""
    t = _sel(a.trains, key)
    if not len(t):
        return False
    timed = "started_at" in t and t["started_at"].notna().all()
    order = t["started_at"].rank(method="first").to_numpy(int) if timed else np.arange(1, len(t) + 1)
    fig, ax = plt.subplots(figsize=(9, 6), constrained_layout=True)
    log = _logx(t["sigma_w2"].unique())
    colour = [TRUE_C if v is True or v == 1 else (FALSE_C if v is False or v == 0 else "grey") for v in t["trainable"]]
    ax.scatter(t["sigma_w2"], t["depth"], c=colour, s=28, zorder=3, edgecolors="black", linewidths=0.4)
    for x, y, n in zip(t["sigma_w2"], t["depth"], order):
        ax.annotate(str(n), (x, y), xytext=(4, 2), textcoords="offset points", fontsize=7, color="#333333")
    b = _sel(a.boundaries, key).dropna(subset=["post_median"]) if "post_median" in a.boundaries else pd.DataFrame()
    if len(b):
        err = [b["post_median"] - b["post_lo"], b["post_hi"] - b["post_median"]]
        ax.errorbar(b["sigma_w2"], b["post_median"], yerr=err, fmt="_", ms=16, mew=2, color="black", capsize=4,
                    zorder=2, label="model L* (80% interval)")
    deep = t["depth"].max() / max(t["depth"].min(), 1) >= 20
    ax.set(xscale="log" if log else "linear", yscale="log" if deep else "linear")
    _sigma_ticks(ax, np.sort(t["sigma_w2"].unique()), log)
    ax.set(xlabel="weight variance σ_w² (dimensionless)", ylabel="trained depth (layers)",
           title=f"Where training ran, numbered in order of start: {group_label(key)}")
    handles = [Line2D([], [], ls="none", marker="o", color=TRUE_C, label="trainable"),
               Line2D([], [], ls="none", marker="o", color=FALSE_C, label="untrainable")]
    if len(b):
        handles.append(Line2D([], [], ls="none", marker="_", ms=14, mew=2, color="black",
                              label="model L* (80% interval)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
