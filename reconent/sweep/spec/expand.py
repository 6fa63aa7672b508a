"""A validated Spec expanded: the grid's axes, their combinations, the train-point selection, the resolved
points (CONTRACT.md), the candidates of a boundary search, and the resolved spec with its hash.

Functions of a Spec (whose methods of the same names call them); they read its fields only, so this
module imports neither the schema nor pydantic. A selection the grid cannot satisfy is a SpecError.
"""
from __future__ import annotations

import itertools
import math

from reconent import __version__

from .. import columns
from ..columns import hash_json
from .errors import SpecError


def axes(spec) -> dict[str, list]:
    """The expanded grid: every axis as a list of values, in columns.axes() order (None where not given)."""
    v = spec.grid._values
    out = {a: v.get(a, [None]) for a in columns.axes()}
    if "arch" not in v:
        out["arch"] = [spec.arch]
    return out


def combos(spec) -> list[dict]:
    """Every combination of the axes, each arch sized by its own setting only (no duplicates)."""
    from reconent.science import archs

    ax, out = axes(spec), []
    for vals in itertools.product(*ax.values()):
        c = dict(zip(ax, vals))
        # an arch is sized by one setting only (archs.build rejects the other)
        for size in archs.sizes():
            if size != archs.get(c["arch"]).size:
                c[size] = None
        out.append(c)
    return _unique(out)


def _unique(dicts: list[dict]) -> list[dict]:
    """The dicts without repeats, in first-seen order."""
    return list({tuple(d.items()): d for d in dicts}.values())


def train_mask(spec) -> list[bool]:
    """Per combination: is it a training point (train.points: none, all, a stride or a subset)?"""
    sel, ax, cs = spec.train.points, axes(spec), combos(spec)
    if sel in ("none", "all") or hasattr(sel, "boundary"):  # a boundary search chooses its own points
        return [sel == "all"] * len(cs)
    given = [a for a in columns.axes() if a in spec.grid._values or a == "arch"]
    if hasattr(sel, "stride"):
        for a in sel.stride:
            if a not in given:
                raise SpecError(f"{a!r} is not an axis of the grid; stride over: {', '.join(given)}",
                                f"train.points.stride.{a}")
        index = {a: {v: i for i, v in enumerate(ax[a])} for a in sel.stride}
        # None (width of a conv point, channels of an mlp point) is not strided
        return [all(index[a].get(c[a], 0) % k == 0 for a, k in sel.stride.items()) for c in cs]
    mask = [False] * len(cs)
    for i, want in enumerate(sel.subset):
        where = f"train.points.subset[{i}]"
        if not want:
            raise SpecError("empty point; give coordinates such as {sigma_w2: 1.76, depth: 10}", where)
        for a, v in want.items():
            if a not in given:
                raise SpecError(f"{a!r} is not an axis of the grid; use: {', '.join(given)}", f"{where}.{a}")
            if not any(_same(v, g) for g in ax[a]):
                raise SpecError(f"{a}={v!r} is not on the grid; grid.{a} has: {_short(ax[a])}", f"{where}.{a}")
        hits = [j for j, c in enumerate(cs) if all(_same(v, c[a]) for a, v in want.items())]
        if not hits:
            raise SpecError(f"matches no grid point ({want})", where)
        for j in hits:
            mask[j] = True
    return mask


def rtol(spec, arch: str) -> float:
    from reconent.science import archs

    return archs.rtol(arch, spec.probe.rtol)


def points(spec) -> list[dict]:
    """Every resolved point (CONTRACT.md): the probe points of all combinations, then the train points."""
    cs, out = combos(spec), []
    coords = lambda c: {**c, "dataset": spec.dataset}  # noqa: E731
    if spec.probe.enabled:
        p, deepest = spec.probe, max(axes(spec)["depth"])
        out += [columns.point("probe", spec.name, coords(c), {
            **p.budget, "checkpoints": p.checkpoints, "batch_size": p.batch_size, "lr": float(p.lr), "rtol": rtol(spec, c["arch"]),
            "train_samples": p.train_samples, "eval_samples": p.eval_samples, "eval_depths": p.eval_depths,
            "entropy_dtype": p.entropy_dtype, "tf32": p.tf32})
            for c in cs if p.depths == "all" or c["depth"] == deepest]
    out += [train_point(spec, c) for c, m in zip(cs, train_mask(spec)) if m]
    return out


def train_point(spec, coords: dict) -> dict:
    """The resolved training point at `coords` (a combination of the grid's axes, any depth)."""
    t = spec.train
    return columns.point("train", spec.name, {**coords, "dataset": spec.dataset}, {
        "epochs": t.epochs, "threshold": float(t.threshold), "lr": float(t.lr), "batch_size": t.batch_size,
        "train_samples": t.train_samples, "accuracy_on": spec.accuracy_on, "eval_every": t.eval_every,
        "stop": t.stop})


def boundary_columns(spec) -> list[dict]:
    """The columns of a boundary search: every combination of the grid's axes but depth and seed."""
    return _unique([{k: v for k, v in c.items() if k not in ("depth", "seed")} for c in combos(spec)])


def boundary_points(spec) -> list[dict]:
    """Every training point a boundary search may propose: its columns × the depth range × the seeds."""
    b = spec.boundary
    return [train_point(spec, {**col, "depth": d, "seed": s}) for col in boundary_columns(spec)
            for d in range(b.depth.min, b.depth.max + 1) for s in axes(spec)["seed"]]


def resolved(spec) -> dict:
    """The spec fully expanded (explicit axis lists, defaults filled), plus version, counts and hash.

    JSON/YAML-able, and load_spec() accepts it again and gives the same points."""
    d = spec.model_dump(mode="json")
    d["grid"] = {a: v for a, v in spec.grid._values.items()}
    if spec.grid.arch is not None:
        d.pop("arch")
    d["train"]["accuracy_on"] = spec.accuracy_on
    d["probe"].update(spec.probe.budget)  # the budget stated, default included (reports read it here)
    if d["probe"]["epochs"] is None:
        d["probe"].pop("epochs")
    else:
        d["probe"].pop("steps")
    archs = axes(spec)["arch"]
    if d["probe"]["rtol"] is None and len(archs) == 1:
        d["probe"]["rtol"] = rtol(spec, archs[0])
    pts = points(spec)
    d["n_points"] = {k: sum(p["kind"] == k for p in pts) for k in ("probe", "train")}
    d["reconent_version"] = __version__
    d["spec_hash"] = hash_json({k: v for k, v in d.items() if k not in ("storage", "spec_hash")})
    return d


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _short(vals: list) -> str:
    s = ", ".join(map(str, vals[:8]))
    return s + (f", ... ({len(vals)} values)" if len(vals) > 8 else "")
