"""What an explain run writes: image grids as PNG, and ``manifest.json`` listing them with captions.

``figures(folder)`` reads the manifest back (the HTML report embeds the figures it lists).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"


def figures(out_dir) -> list[dict]:
    """The figures an explain run wrote to `out_dir`: [{"path", "title", "kind"}], paths absolute."""
    out_dir = Path(out_dir)
    m = json.loads((out_dir / MANIFEST).read_text())
    return [{**f, "path": str(out_dir / f["path"])} for f in m["figures"]]


def write_manifest(out_dir: Path, info: dict, figs: list[dict]) -> dict:
    info = {**info, "figures": figs}
    (out_dir / MANIFEST).write_text(json.dumps(info, indent=1, default=jsonable))
    return {**info, "figures": [{**f, "path": str(out_dir / f["path"])} for f in figs]}


def jsonable(v):
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _as_image(a: np.ndarray, shape) -> np.ndarray:
    """A sample as something imshow draws: (H, W) gray, or (H, W, 3) RGB rescaled to [0, 1] per image."""
    a = np.asarray(a, dtype=np.float64).reshape(shape)
    if a.ndim == 3 and a.shape[0] == 3:
        a = a.transpose(1, 2, 0)
        lo, hi = a.min(), a.max()
        return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return a.reshape(a.shape[-2:]) if a.ndim == 3 else a


def grid(path: Path, panels: list[list], titles: list[list[str]], suptitle: str, shape, cell: float = 1.45) -> None:
    """Rows × columns of images; panels[i][j] a flat sample or None (blank); titles per panel."""
    from reconent.analysis.plots import plt

    rows, cols = len(panels), max(len(r) for r in panels)
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols + 0.3, cell * rows + 0.7), squeeze=False,
                             constrained_layout=True)
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            if j >= len(panels[i]) or panels[i][j] is None:
                ax.axis("off")
                continue
            img = _as_image(panels[i][j], shape)
            ax.imshow(img, cmap=None if img.ndim == 3 else "gray")
            if titles[i][j]:
                ax.set_title(titles[i][j], fontsize=8)
    fig.suptitle(suptitle, fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)
