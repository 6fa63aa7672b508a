"""Study "budgets": how the probe's boundary moves with its decoder budget, how the true boundary moves with the
training budget, and which probe budget predicts which training budget (issue 16, items 1-3).

    .venv/bin/python analysis/budgets/study.py [DATA [OUT]]     # defaults: analysis/budgets/data, analysis/budgets

Reads the committed rows under data/ (the sweeps of run_study.sh; partial data is fine: what is missing is
listed as missing) and writes into OUT (next to this file):
- study.json: every number of the README's tables;
- cutoff_vs_steps.png: the probe's cutoff against decoder steps (log axis), one line per (σ_w², probe depth), with
  6·ξ_c drawn as a dashed level where it is finite and on the scale;
- profiles_by_steps.png: each probe's normalised median entropy profile at every checkpoint, with the 1 ± rtol band
  its cutoff is read against;
- truth_vs_epochs.png: the true L* bracket against the training epoch budget (log axis), one panel per trained σ_w²,
  with the probe's cutoff at each checkpoint drawn as a level;
- curves.png: every stored accuracy curve, one panel per trained σ_w², coloured by depth, with the threshold.

The truth tables read the probes' first seed (seed 0) only: seeds are never pooled into one bracket. Trainings of
other seeds (train_seed1.yaml) go into their own table, point by point beside seed 0 ("seeds" in study.json).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from reconent.analysis import agreement, frames  # noqa: E402
from reconent.science import theory  # noqa: E402
from reconent.sweep import results  # noqa: E402

HERE = Path(__file__).resolve().parent
EPOCHS = [1, 2, 5, 10, 20, 50, 100]  # the training budgets the tables read
THRESHOLDS = [0.8, 0.3]  # 0.8: the paper's MNIST criterion (the sweep's); 0.3: the earlier studies' "learns at all"


def _load(data: Path, kind: str) -> pd.DataFrame:
    try:
        return results.load(str(data), kind)
    except results.NoResults:
        return pd.DataFrame()


def probe_table(p: pd.DataFrame) -> list[dict]:
    """One record per probe (σ_w², depth): its cutoff at every checkpoint, censoring, and the change per doubling."""
    if not len(p):
        return []
    steps = sorted({s for v in p["checkpoint_steps"] for s in frames.steps_list(v)} | set(p["steps_run"].astype(int)))
    out = []
    for (sw, depth), g in p.groupby(["sigma_w2", "depth"]):
        rec = {"sigma_w2": float(sw), "depth": int(depth), "seconds": float(g["seconds"].iloc[0]),
               "train_seconds": float(g["train_seconds"].iloc[0]), "six_xi_c": _six_xi(sw), "cutoff": {},
               "censored": {}}
        for s in steps:
            c = frames.probe_cutoffs(g, steps=s, notes=[])
            if len(c):
                rec["cutoff"][s] = int(c["cutoff"].iloc[0])
                rec["censored"][s] = bool(c["censored"].iloc[0])
        ks = sorted(rec["cutoff"])
        # the rate: cutoff change over the last doubling-or-so of the budget, in layers and relative
        if len(ks) >= 2:
            a, b = ks[-2], ks[-1]
            rec["last_step"] = {"from": a, "to": b, "change": rec["cutoff"][b] - rec["cutoff"][a],
                                "relative": (rec["cutoff"][b] - rec["cutoff"][a]) / max(rec["cutoff"][a], 1)}
        out.append(rec)
    return out


def _six_xi(sw, sb=0.05) -> float | None:
    v = 6 * theory.xi_c(float(sw), sb)
    return float(v) if math.isfinite(v) else None


def truth_table(t: pd.DataFrame, threshold: float) -> list[dict]:
    """The true L* bracket at each epoch budget and trained σ_w² (anytime verdicts from the stored curves)."""
    if not len(t):
        return []
    largest = int(pd.to_numeric(t["epochs"]).max())
    return agreement.true_boundary_by_epochs(t, threshold, [e for e in EPOCHS if e <= largest])


def seed_table(t: pd.DataFrame, threshold: float = 0.8) -> list[dict]:
    """Every (σ_w², depth) trained with more than one seed: per seed, the epoch it passed `threshold` at (None: not
    within its budget) and its final accuracy, so a verdict that changes with the seed is visible point by point."""
    if not len(t) or t["seed"].nunique() < 2:
        return []
    v = frames.train_verdicts(t, threshold, [])
    out = []
    for (sw, d), g in v.groupby(["sigma_w2", "depth"]):
        if g["seed"].nunique() < 2:
            continue
        out.append({"sigma_w2": float(sw), "depth": int(d), "seeds": {
            str(int(r.seed)): {"passed_at": None if pd.isna(r.passed_at) else int(r.passed_at),
                               "epochs_run": int(r.epochs_run), "final_accuracy": float(np.asarray(r.accuracy)[-1])}
            for r in g.sort_values("seed").itertuples()}})
    return out


def cross_table(probes: list[dict], truth: list[dict]) -> list[dict]:
    """Probe cutoff (per checkpoint, deepest probe of the column) against true L* (per epoch budget): the signed
    distance from the cutoff to the true bracket [lower, upper] (0 inside it; + = the probe is optimistic)."""
    out = []
    for tr in truth:
        ps = [p for p in probes if abs(p["sigma_w2"] - tr["sigma_w2"]) < 1e-9]
        if not ps:
            continue
        p = max(ps, key=lambda r: r["depth"])
        lo, hi = tr["lower"], tr["upper"]
        for s, c in p["cutoff"].items():
            if hi is None:  # censored: every trained depth with a verdict passed; only "too low" is measurable
                err = min(0.0, c - lo)
            else:
                err = 0.0 if lo <= c <= hi else (c - hi if c > hi else c - lo)
            out.append({"sigma_w2": tr["sigma_w2"], "epochs": tr["epochs"], "steps": s, "cutoff": c,
                        "true_lower": lo, "true_upper": hi, "error": float(err)})
    return out


def best_steps(cross: list[dict]) -> list[dict]:
    """For each (σ_w², epoch budget): the probe budgets whose cutoff falls inside, or nearest, the true bracket."""
    df = pd.DataFrame(cross)
    out = []
    if not len(df):
        return out
    for (sw, e), g in df.groupby(["sigma_w2", "epochs"]):
        best = g["error"].abs().min()
        out.append({"sigma_w2": float(sw), "epochs": int(e), "best_abs_error": float(best),
                    "steps": [int(s) for s in g.loc[g["error"].abs() == best, "steps"]]})
    return out


def plot_cutoffs(probes: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cmap = plt.get_cmap("viridis")
    sws = sorted({p["sigma_w2"] for p in probes})
    for p in probes:
        col = cmap(sws.index(p["sigma_w2"]) / max(len(sws) - 1, 1))
        ks = sorted(p["cutoff"])
        style = {100: ":", 200: "--", 300: "-"}.get(p["depth"], "-") if p["sigma_w2"] == 1.76 else "-"
        ax.plot(ks, [p["cutoff"][k] for k in ks], style, marker="o", ms=3, color=col,
                label=f"σ_w² {p['sigma_w2']:g}, depth {p['depth']}")
        cens = [k for k in ks if p["censored"][k]]
        ax.plot(cens, [p["cutoff"][k] for k in cens], "x", color="red", ms=8)
        if p["six_xi_c"] is not None and p["six_xi_c"] < 1.2 * max(p["cutoff"].values()):
            ax.axhline(p["six_xi_c"], color=col, lw=0.8, ls=(0, (2, 4)))
    ax.set_xscale("log")
    ax.set_xlabel("decoder budget (Adam steps, log); 63 = one pass over mnist5k, 938 = the default")
    ax.set_ylabel("probe cutoff L* (layers)")
    ax.set_title("The probe's boundary against its budget (dotted levels: 6·ξ_c; x: censored)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_profiles(p: pd.DataFrame, path: Path) -> None:
    """Each probe's normalised median profile S_l/S_L at every checkpoint (the layers it evaluated), with the band
    1 ± rtol the cutoff is read against: where the profile's noise is as wide as the band, the cutoff wanders."""
    rows = [r for _, r in p.sort_values(["sigma_w2", "depth"]).iterrows() if r["checkpoint_steps"] is not None]
    if not rows:
        return
    n = len(rows)
    cols = min(n, 4)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(3.6 * cols, 3.0 * ((n + cols - 1) // cols)),
                             squeeze=False)
    cmap = plt.get_cmap("plasma")
    for ax, r in zip(axes.flat, rows):
        steps = frames.steps_list(r["checkpoint_steps"])
        for i, (k, prof) in enumerate(zip(steps, r["checkpoint_norm_median"])):
            y = np.asarray(prof, float)
            at = np.flatnonzero(np.isfinite(y))
            ax.plot(at + 1, y[at], marker=".", ms=2, lw=0.8, color=cmap(i / max(len(steps) - 1, 1)), label=f"{k}")
        rt = float(r["rtol"])
        ax.axhspan(1 - rt, 1 + rt, color="grey", alpha=0.25, lw=0)
        ax.set_ylim(0.95, 1.01)
        ax.set_title(f"σ_w² {r['sigma_w2']:g}, depth {int(r['depth'])} (band: 1 ± rtol {rt:g})", fontsize=8)
        ax.set_xlabel("layer", fontsize=8)
    axes.flat[0].set_ylabel("S_l / S_L (median)", fontsize=8)
    axes.flat[0].legend(fontsize=6, title="steps", title_fontsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_truth(truth: dict, probes: list[dict], path: Path) -> None:
    sws = sorted({r["sigma_w2"] for rs in truth.values() for r in rs})
    if not sws:
        return
    fig, axes = plt.subplots(1, len(sws), figsize=(4.2 * len(sws), 4), squeeze=False)
    for ax, sw in zip(axes[0], sws):
        for thr, mk, off in zip(THRESHOLDS, ("s", "^"), (1.0, 1.06)):
            rs = [r for r in truth[thr] if r["sigma_w2"] == sw]
            for r in rs:
                hi = r["upper"] if r["upper"] is not None else r["lower"]
                ax.plot([r["epochs"] * off] * 2, [r["lower"], hi], "-", color="C0" if thr == 0.8 else "C1", lw=2)
                ax.plot([r["epochs"] * off], [r["lower"]], mk, color="C0" if thr == 0.8 else "C1", ms=4)
                if r["upper"] is None:
                    ax.annotate("≥", (r["epochs"] * off, r["lower"]), fontsize=8)
            ax.plot([], [], mk + "-", color="C0" if thr == 0.8 else "C1", label=f"true L*, accuracy > {thr}")
        for p in probes:
            if p["sigma_w2"] == sw:
                for k, ls in ((63, ":"), (938, "--"), (max(p["cutoff"]), "-")):
                    if k in p["cutoff"]:
                        ax.axhline(p["cutoff"][k], color="k", ls=ls, lw=0.8, label=f"probe, {k} steps")
        ax.set_xscale("log")
        ax.set_xlabel("training budget (epochs, log)")
        ax.set_title(f"σ_w² = {sw:g}")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("depth")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(t: pd.DataFrame, path: Path) -> None:
    sws = sorted(t["sigma_w2"].unique())
    fig, axes = plt.subplots(1, len(sws), figsize=(4.2 * len(sws), 3.6), squeeze=False, sharey=True)
    norm = matplotlib.colors.Normalize(t["depth"].min(), t["depth"].max())
    for ax, sw in zip(axes[0], sws):
        for _, r in t[t["sigma_w2"] == sw].sort_values("depth").iterrows():
            acc = np.asarray(r["accuracy"], float)
            ax.plot(np.arange(1, acc.size + 1), acc, color=plt.get_cmap("plasma")(norm(r["depth"])), lw=1)
            ax.annotate(str(int(r["depth"])), (acc.size, acc[-1]), fontsize=6)
        ax.axhline(0.8, color="k", lw=0.6, ls="--")
        ax.set_xscale("log")
        ax.set_title(f"σ_w² = {sw:g}")
        ax.set_xlabel("epoch (log)")
    axes[0][0].set_ylabel("test accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _bracket(r) -> str:
    lo, hi = int(r["lower"]), r["upper"]
    if hi is None:
        return f"≥ {lo}"
    return f"< {int(hi)}" if lo == 0 else f"{lo} … {int(hi) - 1}"


def markdown(out: dict) -> str:
    """The README's tables, from study.json's numbers."""
    lines = []
    if out["probes"]:
        ks = sorted({int(k) for p in out["probes"] for k in p["cutoff"]})
        lines += ["| σ_w² | probe depth | " + " | ".join(f"{k} steps" for k in ks) + " | 6·ξ_c | probe s |",
                  "|---:|---:|" + "---:|" * (len(ks) + 2)]
        for p in sorted(out["probes"], key=lambda r: (r["sigma_w2"], r["depth"])):
            cut, cen = ({int(k): v for k, v in p[c].items()} for c in ("cutoff", "censored"))  # JSON keys are strings
            cells = [(f"{cut[k]}{'*' if cen[k] else ''}" if k in cut else "–") for k in ks]
            # at criticality ξ_c diverges; numerically it is only huge
            six = "∞" if p["six_xi_c"] is None or p["six_xi_c"] > 1e3 else f"{p['six_xi_c']:.1f}"
            lines.append(f"| {p['sigma_w2']:g} | {p['depth']} | " + " | ".join(cells) + f" | {six} | {p['seconds']:.0f} |")
        lines += ["", "(* censored: no plateau inside the probe)", ""]
    for thr, truth in out["truth_by_epochs"].items():
        if not truth:
            continue
        es = sorted({r["epochs"] for r in truth})
        sws = sorted({r["sigma_w2"] for r in truth})
        lines += [f"True L* at accuracy > {thr} (anytime verdicts from the stored curves):", "",
                  "| σ_w² | " + " | ".join(f"{e} ep." for e in es) + " |", "|---:|" + "---:|" * len(es)]
        for sw in sws:
            by = {r["epochs"]: r for r in truth if r["sigma_w2"] == sw}
            lines.append(f"| {sw:g} | " + " | ".join(_bracket(by[e]) if e in by else "–" for e in es) + " |")
        lines.append("")
    for thr, cross in out["cross"].items():
        if not cross:
            continue
        df = pd.DataFrame(cross)
        lines += [f"Probe cutoff minus the true bracket at accuracy > {thr} (0: inside; + optimistic), rows: probe "
                  "steps, columns: training epochs:", ""]
        for sw, g in df.groupby("sigma_w2"):
            es = sorted(g["epochs"].unique())
            lines += [f"σ_w² = {sw:g}:", "", "| steps | " + " | ".join(f"{e} ep." for e in es) + " |",
                      "|---:|" + "---:|" * len(es)]
            for s_, h in g.groupby("steps"):
                by = dict(zip(h["epochs"], h["error"]))
                lines.append(f"| {s_} | " + " | ".join(f"{by[e]:+.0f}" if e in by else "–" for e in es) + " |")
            lines.append("")
    if out.get("seeds"):
        seeds = sorted({k for r in out["seeds"] for k in r["seeds"]}, key=int)
        lines += ["Seeds side by side: the epoch each passed 0.8 at (– : not within its epochs run), final accuracy:",
                  "", "| σ_w² | depth | " + " | ".join(f"seed {k}" for k in seeds) + " |",
                  "|---:|---:|" + "---:|" * len(seeds)]
        for r in out["seeds"]:
            cell = {k: f"{'–' if v['passed_at'] is None else v['passed_at']} ({v['final_accuracy']:.3f})"
                    for k, v in r["seeds"].items()}
            lines.append(f"| {r['sigma_w2']:g} | {r['depth']} | " + " | ".join(cell.get(k, "") for k in seeds) + " |")
        lines.append("")
    if out["trainings"]:
        lines += ["| σ_w² | depth | epochs run | passed 0.8 at | final accuracy | seconds |", "|---:|---:|---:|---:|---:|---:|"]
        for r in out["trainings"]:
            lines.append(f"| {r['sigma_w2']:g} | {r['depth']} | {r['epochs_run']} | "
                         f"{'–' if r['passed_at'] is None else r['passed_at']} | {r['final_accuracy']:.3f} | "
                         f"{r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(data: str = str(HERE / "data"), out_dir: str = str(HERE)) -> dict:
    od = Path(out_dir)
    od.mkdir(parents=True, exist_ok=True)
    p, t_all = _load(Path(data), "probe"), _load(Path(data), "train")
    t = t_all[t_all["seed"] == 0] if len(t_all) else t_all  # the probes' seed; other seeds: seed_table
    probes = probe_table(p)
    truth = {thr: truth_table(t, thr) for thr in THRESHOLDS}
    cross = {thr: cross_table(probes, truth[thr]) for thr in THRESHOLDS}
    out = {"data": str(data), "n_probes": len(p), "n_trainings": len(t),
           "probe_seconds": float(p["seconds"].sum()) if len(p) else 0.0,
           "training_seconds": float(t["seconds"].sum()) if len(t) else 0.0,
           "trainings": [] if not len(t) else [
               {"sigma_w2": float(r.sigma_w2), "depth": int(r.depth), "epochs_run": int(r.epochs_run),
                "passed_at": None if math.isnan(pa) else int(pa), "final_accuracy": float(np.asarray(r.accuracy)[-1]),
                "seconds": float(r.seconds), "status": r.status}
               for r, pa in zip(t.sort_values(["sigma_w2", "depth"]).itertuples(),
                                frames.train_verdicts(t.sort_values(["sigma_w2", "depth"]), 0.8, [])["passed_at"])],
           "probes": probes,
           "truth_by_epochs": {str(k): v for k, v in truth.items()},
           "cross": {str(k): v for k, v in cross.items()},
           "best_steps": {str(k): best_steps(v) for k, v in cross.items()},
           "seeds": seed_table(t_all, 0.8)}
    (od / "study.json").write_text(json.dumps(out, indent=1, default=float) + "\n")
    (od / "tables.md").write_text(markdown(json.loads((od / "study.json").read_text())))
    if probes:
        plot_cutoffs(probes, od / "cutoff_vs_steps.png")
        plot_profiles(p, od / "profiles_by_steps.png")
    if len(t):
        plot_truth(truth, probes, od / "truth_vs_epochs.png")
        plot_curves(t, od / "curves.png")
    return out


if __name__ == "__main__":
    o = main(*sys.argv[1:])
    where = sys.argv[2] if len(sys.argv) > 2 else HERE
    print(f"{o['n_probes']} probes, {o['n_trainings']} trainings; study.json and figures written to {where}")
