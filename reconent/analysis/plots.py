"""Figures for a single probe: the entropy profile and the cascade's reconstructions."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from reconent.science.probe import ProbeResult  # noqa: E402


def profile_plot(r: ProbeResult, path, title: str = "") -> None:
    """Left: S_ℓ median with the interquartile band. Right: the normalised median the cutoff reads."""
    layers = np.arange(1, r.depth + 1)
    cut = r.cutoff()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    a.fill_between(layers, r.quantile(0.25), r.quantile(0.75), alpha=0.3, label="interquartile range")
    a.plot(layers, r.median, marker=".", label="median $S_\\ell$")
    a.set(xlabel="depth ℓ (layers)", ylabel="relative entropy $S_\\ell$ (nats)", title="reconstruction entropy")
    ax2 = a.twinx()
    ax2.plot(layers, r.differential_entropy, color="tab:green", ls="--", label="differential entropy H")
    ax2.set_ylabel("differential entropy H (nats)", color="tab:green")
    lines = a.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    a.legend(lines, [ln.get_label() for ln in lines], loc="lower right", fontsize=8)
    b.axhspan(1 - r.rtol, 1 + r.rtol, color="grey", alpha=0.25, label=f"plateau ±rtol ({r.rtol:g})")
    b.plot(layers, r.norm_median, marker=".", label="median of $S_\\ell/S_L$")
    b.axvline(cut, color="tab:red", ls=":", label=f"cutoff = {cut}")
    b.set(xlabel="depth ℓ (layers)", ylabel="$S_\\ell / S_L$ (dimensionless)", title="normalised profile and cutoff")
    b.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pick_depths(depth: int, n: int = 7) -> list[int]:
    """About n depths from 1 to `depth`, spaced geometrically (information is lost fast, then slowly)."""
    return sorted({int(round(v)) for v in np.geomspace(1, depth, num=min(n, depth))})


def reconstructions_plot(r: ProbeResult, path, image_shape=None, n_samples: int = 4, title: str = "") -> None:
    """Rows: held-out samples. Columns: the input, then x̂^(ℓ) from several depths ℓ."""
    ev = np.flatnonzero(r.evaluated) + 1  # eval_depths search: only the layers whose cascade ran
    depths = sorted({int(ev[np.abs(ev - d).argmin()]) for d in pick_depths(r.depth)})
    ex = r.examples[:, :n_samples]
    n_samples = ex.shape[1]
    shape = image_shape or _square(ex[0, 0].size)
    fig, axes = plt.subplots(n_samples, len(depths) + 1, figsize=(1.5 * (len(depths) + 1), 1.6 * n_samples),
                             squeeze=False, constrained_layout=True)
    for i in range(n_samples):
        for j, l in enumerate([0] + depths):
            ax = axes[i, j]
            ax.imshow(ex[l, i].reshape(shape), cmap="gray")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title("input" if l == 0 else f"from layer {l}", fontsize=9)
    fig.suptitle(title or "cascade reconstructions $\\hat x^{(\\ell)} = g_1\\circ\\cdots\\circ g_\\ell(h_\\ell)$")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _square(n: int) -> tuple[int, int]:
    s = int(round(np.sqrt(n)))
    return (s, s) if s * s == n else (1, n)
