"""The phase-diagram study's numbers and figures, from the stored sweep (run spec.yaml first).

    .venv/bin/python analysis/phase_diagram/study.py [analysis/phase_diagram/data/phase_diagram]
    .venv/bin/python analysis/phase_diagram/study.py analysis/phase_diagram/data/phase_diagram_200   # spec_200.yaml: *_200 files

Writes next to this file:
- report/ (`reconent report`: phase.png is the pair of heatmaps over (σ_w², depth), relative and
  differential entropy, with the predicted boundary L*(σ_w²), 6·ξ_c and the critical line drawn over them);
- heatmaps.png (reconent.analysis.heatmaps, the paper's style: a linear σ_w² axis, the same overlays);
- study.json: per σ_w² the probe cutoff (exhaustive), the cutoff `eval_depths: search` would have found on
  the same profile (its grid and refinement replayed), the cutoff at every stored decoder budget (checkpoints) and
  at rtol 0.005/0.01/0.02 (final profile), 6·ξ_c and χ₁ from mean-field theory, and the probe's seconds.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from reconent.analysis import frames
from reconent.analysis.heatmaps import paper_heatmaps
from reconent.science import probe as P
from reconent.science import theory
from reconent.science.entropy import cutoff_from_normalised
from reconent.sweep import results

HERE = Path(__file__).resolve().parent


def cutoff_by_steps(row) -> dict:
    """{steps: cutoff} at every decoder budget the probe was read at (its checkpoints and its end)."""
    ks = sorted(set(frames.steps_list(row["checkpoint_steps"].iloc[0])) | {int(row["steps_run"].iloc[0])})
    return {k: int(frames.probe_cutoffs(row, steps=k, notes=[])["cutoff"].iloc[0]) for k in ks}


RTOLS = (0.005, 0.01, 0.02)


def cutoff_by_rtol(p) -> dict:
    """{sigma_w2: {rtol: cutoff}} on the final, exhaustively evaluated profiles: how much of a cutoff is the choice of
    rtol (the budgets study could only read other rtols on the `search` grid)."""
    by = {t: frames.probe_cutoffs(p, rtol=t, notes=[]).set_index("sigma_w2")["cutoff"] for t in RTOLS}
    return {float(s): {str(t): int(by[t][s]) for t in RTOLS} for s in by[RTOLS[0]].index}


def boundary_by_steps(rows: list[dict], path: Path, old: Path | None) -> None:
    """L*(σ_w²) at every stored budget, 6·ξ_c, and the one-pass (`epochs: 1`) sweep's cutoffs from `old` if given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.4))
    sw = [r["sigma_w2"] for r in rows]
    ks = sorted({k for r in rows for k in r["cutoff_by_steps"]})
    for i, k in enumerate(ks):
        ax.plot(sw, [r["cutoff_by_steps"].get(k, np.nan) for r in rows], marker="o", ms=3, color=f"C{i}",
                label=f"probe, {k} steps")
    loose = [r["cutoff_by_rtol"].get(str(RTOLS[-1]), np.nan) for r in rows]
    if not all(np.isnan(loose)):  # the final profile read with a looser plateau rule: how much is rtol
        ax.plot(sw, loose, ":", marker=".", color=f"C{len(ks) - 1}", label=f"probe, {ks[-1]} steps, rtol {RTOLS[-1]:g}")
    depth = rows[0]["depth"]
    if old is not None and old.exists():
        o = json.loads(old.read_text())["rows"]
        ax.plot([r["sigma_w2"] for r in o], [r["cutoff"] for r in o], "x", color="grey",
                label="earlier sweep, epochs: 1 (63 steps), exhaustive evaluation")
    fine = np.linspace(min(sw), max(sw), 400)
    th = np.array([6 * theory.xi_c(x, 0.05) for x in fine])
    ax.plot(fine, np.where(th < 250, th, np.nan), "k--", lw=1, label="6·ξ_c")
    ax.set(xlabel="σ_w²", ylabel="cutoff L* (layers)", ylim=(0, depth + 10),
           title=f"The probe's boundary at depth {depth} against its decoder budget")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)  # below: no curve hidden
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(uri: str = "analysis/phase_diagram/data/phase_diagram") -> None:
    p = results.load(uri).sort_values("sigma_w2")
    rows = []
    for _, r in p.iterrows():
        nm = np.asarray(r["relative_entropy_norm_median"], float)
        mf = theory.mean_field(float(r["sigma_w2"]), float(r["sigma_b2"]))
        search, layers = P.search_replay(nm, float(r["rtol"]))
        n_eval = len(layers)
        rows.append({"sigma_w2": float(r["sigma_w2"]), "status": r["status"], "depth": int(r["depth"]),
                     "cutoff": int(cutoff_from_normalised(nm, float(r["rtol"]))), "cutoff_search_replayed": search,
                     "search_layers_evaluated": n_eval, "six_xi_c": 6 * mf["xi_c"], "chi_1": mf["chi_1"],
                     "seconds": float(r["seconds"]), "train_seconds": float(r["train_seconds"]),
                     "cutoff_by_steps": cutoff_by_steps(p[p.index == r.name])})
    by_rtol = cutoff_by_rtol(p) if all(v in ("all", None) for v in p.get("eval_depths", [None])) else {}
    for r in rows:
        r["cutoff_by_rtol"] = by_rtol.get(r["sigma_w2"], {})
    out = {"sweep": uri, "n": len(rows), "total_probe_seconds": float(p["seconds"].sum()),
           "first_start": str(p["started_at"].min()), "last_finish": str(p["finished_at"].max()),
           "search_agrees": sum(abs(r["cutoff"] - r["cutoff_search_replayed"]) <= max(1, 0.03 * r["cutoff"])
                                for r in rows), "rows": rows}
    # spec.yaml (sweep phase_diagram, depth 100) writes study.json, heatmaps.png and report/;
    # spec_200.yaml (phase_diagram_200) the same names with the suffix _200
    tag = str(p["sweep"].iloc[0]).removeprefix("phase_diagram")
    (HERE / f"study{tag}.json").write_text(json.dumps(out, indent=1) + "\n")
    ks = sorted({k for r in rows for k in r["cutoff_by_steps"]})
    print(f"{'σ_w²':>5} {'cutoff':>6} {'search':>6} " + " ".join(f"{f'@{k}':>5}" for k in ks)
          + " " + " ".join(f"{f'r{t:g}':>6}" for t in RTOLS) + f" {'6ξ_c':>7} {'χ₁':>6} {'s':>6}")
    for r in rows:
        print(f"{r['sigma_w2']:>5.2f} {r['cutoff']:>6} {r['cutoff_search_replayed']:>6} "
              + " ".join(f"{r['cutoff_by_steps'].get(k, '–'):>5}" for k in ks) + " "
              + " ".join(f"{r['cutoff_by_rtol'].get(str(t), '–'):>6}" for t in RTOLS)
              + f" {r['six_xi_c']:>7.1f} {r['chi_1']:>6.3f} {r['seconds']:>6.0f}")
    print(f"search finds the exhaustive cutoff (±1 layer or ±3%) on {out['search_agrees']} of {len(rows)} profiles")
    if any(len(r["cutoff_by_steps"]) > 1 for r in rows):
        # the one-pass depth-200 sweep, to compare a deeper-budget depth-200 sweep with
        old = HERE / "study_200.json" if rows[0]["depth"] == 200 and tag != "_200" else None
        boundary_by_steps(rows, HERE / f"boundary_by_steps{tag}.png", old)
    paper_heatmaps(p, HERE / f"heatmaps{tag}.png",
                   title=f"wide tanh MLP on mnist5k, σ_b² = 0.05: {len(rows)} probes of depth {rows[0]['depth']}")
    subprocess.run([str(Path(sys.executable).with_name("reconent")), "report", uri, "-o", str(HERE / f"report{tag}")],
                   check=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
