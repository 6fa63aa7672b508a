"""Sweeps on Ray Tune: one trial per missing grid point, one Parquet part per finished point.

The store is the source of truth, not Tune's experiment state: a point is done when its part is
valid (`Store.done_ids`). So a rerun after any crash (driver, worker, node) just computes the
points that have no valid part, and a part is written by the trial itself, atomically, the moment
its point finishes. Tune's own results directory is scratch (a temp dir, removed afterwards).

Failures are split on purpose:
- the science failing (bad setting, NaN) is a row with status 'error'/'diverged' and a trial
  that succeeds, so it is never retried (reconent.sweep.trial.run_point);
- the environment failing (a dead worker or node, unwritable storage, out of memory, a dataset
  missing on a worker) fails the trial, and Tune retries it up to `spec.max_failures` times
  (FailureConfig); no part is left, so the next run computes it (`trial.environmental`).
`run` is the one entry point: it checks the inputs (the spec, the datasets) before anything is
written, holds the sweep's lease (one driver per sweep and storage), computes, and compacts when asked.
"""
from __future__ import annotations

import sys
import time

from .columns import point_id
from .ray_session import RaySession, fit, slots
from .search.boundary import BoundaryStrategy
from .trainables import point_trainable
from .trial import versions
from .uri import absolute_uri


def resolve_spec(spec, storage, check_storage: bool = True):
    """A Spec from a Spec or a path (then `storage`, if given, overrides the spec's)."""
    from .spec import Spec, load_spec

    if isinstance(spec, Spec):
        if storage is not None:
            raise ValueError("pass the spec as a path to override its storage")
        return spec
    return load_spec(spec, storage_override=storage, check_storage=check_storage)


def run(spec, address: str | None = None, storage: str | None = None, progress: bool = True,
        retry_errors: bool = False, compact: bool = False, check_data: bool = True) -> dict:
    """Run every point of `spec` (a path or a Spec) that has no valid part yet; returns a summary.

    Trials write their parts themselves: on a multi-machine cluster the storage must be shared
    (s3://, gs://, or a network file system mounted at the same path everywhere).
    Validation comes first, so a bad spec writes nothing; so does a dataset missing from `data_root`
    (DatasetNotFound, exit 2) unless `check_data=False` (a driver that does not hold the data its
    workers have: a trial that finds it missing fails, is retried, and leaves no result). A second
    driver of the same sweep and storage refuses (LeaseHeld, exit 2). `compact=True` merges the
    parts at the end (summary key `compacted`).

    Summary keys: sweep, storage, points, skipped (had a valid part), ran (trials started), done
    (= ok), failed (= diverged + error + lost, where lost means no part even after `max_failures`
    retries), retries (infrastructure failures Tune recovered from), seconds. A boundary search
    (train.points.boundary) runs after the grid's points, and adds its trainings to these counts and
    its per-column result under `search`.
    """
    from .lease import Lease
    from .preflight import check_datasets
    from .store import Store

    spec = resolve_spec(spec, storage)
    if check_data:
        check_datasets(spec)
    store = Store(absolute_uri(spec.storage), spec.name)
    with Lease(store) as lease:
        t0 = time.perf_counter()
        summary = _sweep(spec, store, absolute_uri(spec.storage), address, progress, retry_errors)
        summary["seconds"] = time.perf_counter() - t0
        if compact:
            lease.check()  # a driver that lost its lease compacts nothing
            summary["compacted"] = [store.compact(kind) for kind in store.kinds()]
            for c in summary["compacted"]:
                print(f"reconent: compacted {c['kind']}: {c['files_before']} files -> {c['files_after']}",
                      file=sys.stderr)
    return summary


def _sweep(spec, store, storage_uri: str, address: str | None, progress: bool, retry_errors: bool) -> dict:
    """What `run` computes once the inputs are checked and the lease is held: the points without a
    valid part, then the boundary search if the spec has one."""
    points = spec.points()
    redo = ("error",) if retry_errors else ()  # --retry-errors: stored 'error' rows are computed again
    done = {kind: store.done_ids(kind, exclude=redo) for kind in {p["kind"] for p in points}}
    missing = [p for p in points if point_id(p) not in done[p["kind"]]]
    store.save_spec(spec.resolved())
    summary = {"sweep": spec.name, "storage": storage_uri, "points": len(points),
               "skipped": len(points) - len(missing), "ran": len(missing), "done": 0, "failed": 0, "ok": 0,
               "diverged": 0, "error": 0, "lost": 0, "retries": 0, "seconds": 0.0}
    search = spec.boundary is not None
    if missing or search:
        cpu, gpu = float(spec.resources.cpu), float(spec.resources.gpu or 0)
        ctx = {"storage": storage_uri, "sweep": spec.name, "spec_hash": spec.spec_hash, "device": spec.device,
               "data_root": absolute_uri(spec.data_root), "download": bool(spec.download),
               "threads": max(1, round(cpu)),
               "code_version": versions()["code_version"]}  # the driver's checkout: workers may have no .git
        # The boundary search reads the probes' predictions, so it starts once the grid's points are stored;
        # it is rebuilt from the store, and a finished one (everything stored) starts no Ray at all.
        strategy = None if missing or not search else BoundaryStrategy(spec, store, retry_errors)
        if missing or (strategy is not None and not strategy.finished()):
            with RaySession(address):
                n = slots(cpu, gpu, local=address is None)
                if missing:
                    grid, cb = fit(point_trainable, missing, ctx, {"cpu": cpu, "gpu": gpu}, spec.max_failures,
                                   progress, max_concurrent=n)
                    _account(summary, cb, store, missing)
                if search:
                    strategy = BoundaryStrategy(spec, store, retry_errors)  # again: the probes just stored are its prior
                    if not strategy.finished():
                        # a cluster may grow: propose one batch per CPU the cluster has now
                        batch = n or max(1, int(_cluster_cpus() // max(cpu, 1e-9)))
                        grid, cb = fit(point_trainable, strategy, ctx, {"cpu": cpu, "gpu": gpu}, spec.max_failures,
                                       progress, max_concurrent=batch,
                                       total=max(0, spec.boundary.budget - strategy.search.used()))
                        summary["ran"] += len(strategy.proposed)
                        _account(summary, cb, store, strategy.proposed)
        if search:
            summary["points"] += strategy.search.used()
            summary["skipped"] += strategy.stored
            summary["search"] = {"strategy": "boundary", "budget": spec.boundary.budget,
                                 "trainings": strategy.search.used(), "stored_at_start": strategy.stored,
                                 "columns": strategy.summary()}
    return summary


def _account(summary: dict, cb, store, points: list[dict]) -> None:
    """Add one Tune experiment's outcome to the summary (the store says what was lost)."""
    kinds = {p["kind"] for p in points}
    after = {kind: set(store.done_ids(kind)) for kind in kinds}
    for point, error in cb.lost:
        why = _first_line(error)
        if point and point_id(point) not in after[point["kind"]] and _worker_died(why):
            # a killed worker (memory monitor, dead node) never reached the trial's own failure record
            store.record_failure(point["kind"], point_id(point), _worker_died(why))
        print(f"reconent: trial failed after retries: {why}", file=sys.stderr)
    summary["lost"] += sum(point_id(p) not in after[p["kind"]] for p in points)
    for s in cb.statuses.values():
        summary[s if s in ("ok", "diverged", "error") else "error"] += 1
    summary["done"], summary["retries"] = summary["ok"], summary["retries"] + cb.retries
    summary["failed"] = summary["diverged"] + summary["error"] + summary["lost"]


def _first_line(error) -> str:
    """The first line of a trial's last error, without Tune's 'Failure # n (occurred at ...)' headers."""
    last = str(error or "unknown error").rsplit("Failure # ", 1)[-1].splitlines()
    lines = [ln.strip() for ln in last[1:] if ln.strip()] or [ln.strip() for ln in last if ln.strip()]
    return (lines[0] if lines else "unknown error")[:500]


def _worker_died(line: str) -> str | None:
    """`Type: message` for `sweep status` when the error says Ray killed the trial's worker, else None
    (an exception in the trial itself was recorded there, with its own type)."""
    if "running low on memory" in line:
        return line if line.startswith("OutOfMemoryError") else f"OutOfMemoryError: {line}"
    if "actor died" in line.lower() or "worker process has died" in line.lower():
        return f"WorkerDied: {line}"
    return None


def _cluster_cpus() -> float:
    import ray

    return ray.cluster_resources().get("CPU", 1.0)
