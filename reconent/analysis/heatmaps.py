"""Paper-style phase diagrams (arXiv:2406.12916, the MLP heatmaps): the relative and the differential
entropy over (σ_w², depth) on a linear σ_w² axis, with the predicted boundary L*(σ_w²) (the probe cutoff),
the mean-field trainable depth 6·ξ_c and the critical σ_w² drawn over them. For one group of probes
(one dataset, arch, activation, width, σ_b²); the report's `phase_figure` draws all groups with training
ground truth as well.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .boundary import critical, theory_depth  # noqa: E402
from .figures import entropy_heatmap  # noqa: E402
from .frames import probe_cutoffs  # noqa: E402


def paper_heatmaps(probes: pd.DataFrame, path, rtol: float | None = None, title: str = "",
                   steps: int | None = None) -> pd.DataFrame:
    """Write the two heatmaps to `path`; return the per-σ_w² table drawn (cutoff, 6·ξ_c). One decoder budget:
    `steps` (None: the largest stored; probes at other budgets are left out, as in `analyse`)."""
    from .core import default_probe_steps

    p = probe_cutoffs(probes, rtol, steps=default_probe_steps(probes) if steps is None else steps)
    if p[["arch", "activation", "sigma_b2", "dataset"]].drop_duplicates().shape[0] != 1:
        raise ValueError("paper_heatmaps draws one group (dataset, arch, activation, σ_b²); select it first")
    arch, act, sb2 = p["arch"].iloc[0], p["activation"].iloc[0], float(p["sigma_b2"].iloc[0])
    deepest = p.sort_values("depth").groupby("sigma_w2").tail(1)
    line = deepest.groupby("sigma_w2")["cutoff"].median().rename("cutoff").reset_index()
    line["six_xi_c"] = theory_depth(line["sigma_w2"].to_numpy(float), sb2, act, arch=arch)
    xc = critical(sb2, act, arch)
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.0), constrained_layout=True)
    for ax, col, lab in ((axes[0], "relative_entropy_median", "relative entropy $S_\\ell$ (nats, median)"),
                         (axes[1], "differential_entropy", "differential entropy $H_\\ell$ (nats)")):
        xs, ls, _ = entropy_heatmap(fig, ax, p, col, lab, cmap="magma", shrink=0.92)
        fine = np.linspace(xs.min(), xs.max(), 400)
        th = theory_depth(fine, sb2, act, arch=arch)
        ax.plot(fine, np.where(th <= ls.max(), th, np.nan), color="#33c3ff", lw=2, ls="--", label="6·ξ_c (mean field)")
        if xs.min() <= xc <= xs.max():
            ax.axvline(xc, color="white", ls=":", lw=1.4, label=f"critical σ_w² = {xc:.2f} (χ₁ = 1)")
        ax.plot(line["sigma_w2"], np.minimum(line["cutoff"], ls.max()), color="#7CFC00", lw=1.6, marker="o", ms=3.5,
                label="predicted L* (probe cutoff)")
        ax.set(xlabel="weight variance σ_w²", ylabel="depth ℓ (layers)", ylim=(0.5, ls.max() + 0.5),
               title=lab.split(" (")[0])
        ax.legend(loc="upper right", fontsize=8, framealpha=0.75)
    fig.suptitle(title or f"{arch} {act}, σ_b² = {sb2:g}: reconstruction entropies over (σ_w², depth)")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return line
