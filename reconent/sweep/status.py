"""`reconent sweep status`: points done, failed and left, read from the store (no Ray)."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .columns import point_id
from .uri import absolute_uri, split_sweep


def locate(name_or_uri: str, storage: str | None) -> tuple[str, str]:
    """(storage root, sweep name) from a sweep name (+ storage), the URI of a sweep's folder, or a spec file
    (its name and storage; --storage overrides the storage, as for `sweep run`)."""
    s = str(name_or_uri).rstrip("/")
    if Path(s).is_file():
        from .spec import load_spec

        spec = load_spec(s, storage_override=storage, check_storage=False)
        return absolute_uri(spec.storage), spec.name
    if "://" in s or "/" in s or Path(s).is_dir():
        if storage is not None:
            raise UserError("give either a sweep URI or a sweep name with --storage, not both")
        return split_sweep(s)
    from .spec import Spec

    return absolute_uri(storage or Spec.model_fields["storage"].default), s


def status(name_or_uri: str, storage: str | None = None) -> dict:
    """Points done (ok), failed (error or diverged) and left (no valid part) of the sweep's latest spec.

    Failures by kind: `diverged` and `error` are the science's answers (stored rows; `sweep run
    --retry-errors` recomputes the errors); `environment` counts the points left whose last trial
    failed for an environmental reason (out of memory, I/O, missing data, network: no row, the next
    run computes them), and `environment_errors` those by exception type.
    A boundary search (train.points.boundary) adds the trainings it stored to these counts, and
    `search`: its budget, the trainings stored and the most it may still run (it stops earlier once
    every column is resolved).
    Read-only: a corrupt part counts as left here (the next run quarantines and recomputes it)."""
    from .spec import load_spec
    from .store import Store

    root, name = locate(name_or_uri, storage)
    store = Store(root, name)
    saved = store.load_spec()
    if saved is None:
        raise UserError(f"no sweep {name!r} under {root} (no {store.path('specs', 'spec.yaml')})")
    spec = load_spec(saved, storage_override=root, check_storage=False)
    points = spec.points()
    if spec.boundary is not None:  # the search's trainings so far: its candidates that have a row
        candidates = {point_id(p): p for p in spec.boundary_points()}
        rows = store.read("train")
        ran = sorted(set(rows["point_id"]) & candidates.keys()) if len(rows) else []
        points += [candidates[pid] for pid in ran]
    out = {"sweep": name, "storage": root, "spec_hash": spec.spec_hash, "points": len(points), "done": 0,
           "failed": 0, "left": 0, "ok": 0, "diverged": 0, "error": 0, "environment": 0, "environment_errors": {}}
    for kind in sorted({p["kind"] for p in points}):
        df = store.read(kind)
        got = dict(zip(df["point_id"], df["status"]))
        env = store.failures(kind)
        for p in points:
            if p["kind"] == kind:
                pid = point_id(p)
                st = got.get(pid)
                out["left" if st is None else st if st in ("ok", "diverged") else "error"] += 1
                if st is None and pid in env:
                    out["environment"] += 1
                    typ = env[pid].split(":", 1)[0]
                    out["environment_errors"][typ] = out["environment_errors"].get(typ, 0) + 1
    out["done"], out["failed"] = out["ok"], out["diverged"] + out["error"]
    if spec.boundary is not None:
        out["search"] = {"strategy": "boundary", "budget": spec.boundary.budget, "trainings": len(ran),
                         "left_at_most": max(0, spec.boundary.budget - len(ran))}
    return out
