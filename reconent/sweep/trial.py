"""One sweep point, computed without Ray: `run_point(point, device) -> row` (docs/CONTRACT.md).

Kept free of Ray so it can be tested and debugged as a plain function; reconent.sweep wraps it
in a thin Tune trainable. Failures split by kind (`environmental`):
- the science failing (a setting the model rejects, a NaN) is a *result*: the row gets status
  'error' (with the message) or 'diverged' and the trial succeeds, so Tune never retries it;
- the environment failing (out of memory, I/O, a missing dataset, the network, the CUDA runtime)
  is raised, so the trial fails, Tune's FailureConfig retries it, and no part is written: a point
  whose retries run out is computed again by the next `sweep run`.
"""
from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

from . import columns
from .columns import SCHEMA_VERSION, point_id

# The result columns each kind's science fills in (the rest of the row is identity and run metadata).
RESULTS = {k: list(columns.SOURCES[k]) for k in columns.KINDS}
# The probe's evaluation settings, passed to probe() as keywords when set (the neutral ones but the budget).
_EVALUATION = [k for k in columns.NEUTRAL["probe"] if k not in columns.BUDGETS["probe"]]


def resolve_device(device: str) -> str:
    """'auto' picks CUDA where this worker has it. Resolved on the worker, not the driver."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@functools.lru_cache(maxsize=1)
def versions() -> dict:
    def v(pkg):
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    from reconent import __version__

    return {"reconent_version": __version__, "torch_version": v("torch"), "ray_version": v("ray"),
            "python_version": platform.python_version(), "code_version": _code_version(__version__)}


def _code_version(fallback: str) -> str:
    # The git sha of the checkout the code runs from. A Ray job's working_dir has no .git, so
    # `sweep submit` sends the submitter's sha in RECONENT_CODE_VERSION; an installed wheel has
    # neither: then the package version is all we know.
    if os.environ.get("RECONENT_CODE_VERSION"):
        return os.environ["RECONENT_CODE_VERSION"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        if out.returncode == 0 and len(sha) == 40:
            return sha
    except (OSError, subprocess.SubprocessError):
        pass
    return fallback


def gpu_info(device: str) -> dict:
    """The GPU model and the CUDA/cuDNN versions behind a CUDA row (all null on CPU)."""
    import torch

    if not str(device).startswith("cuda"):
        return {"gpu_name": None, "cuda_version": None, "cudnn_version": None}
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"gpu_name": torch.cuda.get_device_name(torch.device(device)), "cuda_version": torch.version.cuda,
            "cudnn_version": None if cudnn is None else str(cudnn)}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def empty_row(point: dict, **extra) -> dict:
    """Every column of the kind's schema: the point, the host and versions, and None for the rest (one
    schema for all statuses)."""
    kind = point["kind"]
    row = {c.name: None for c in columns.columns(kind)}
    row.update({k: point.get(k) for k in columns.point_keys(kind)})
    row.update({"schema_version": SCHEMA_VERSION, "point_id": point_id(point), "kind": kind})
    row["node"] = socket.gethostname()
    row.update(versions())
    row.update(extra)
    return row


# CUDA runtime failures arrive as plain RuntimeErrors; their messages say where they come from.
_ENV_RUNTIME = ("cuda", "cudnn", "cublas", "nccl", "out of memory", "device-side assert", "hip error")


def environmental(e: BaseException) -> bool:
    """True for a failure of the machine rather than of the science: retried, never stored as a result.

    MemoryError, OSError (I/O, missing files such as DatasetNotFound, ConnectionError, timeouts),
    torch.cuda.OutOfMemoryError and CUDA runtime errors. Everything else (ValueError from an impossible
    setting, a NaN) is the science's own answer."""
    if isinstance(e, (MemoryError, OSError)):
        return True
    if isinstance(e, RuntimeError):
        import torch

        oom = getattr(torch.cuda, "OutOfMemoryError", ())
        return isinstance(e, oom) or any(w in str(e).lower() for w in _ENV_RUNTIME)
    return False


def run_point(point: dict, device: str = "cpu", *, data_root: str | None = None, download: bool = False,
              on_epoch: Callable[[int, float, float], None] | None = None, **extra) -> dict:
    """Compute one resolved point and return its full row. Never raises for the science's sake;
    raises environmental failures (`environmental`) unchanged, so that they are retried.

    `on_epoch(epoch, accuracy, loss)` is passed to training (progress reports); `extra` columns
    (spec_hash, node_id) are set on the row as given.
    """
    if point.get("kind") not in columns.KINDS:
        raise ValueError(f"point kind must be one of {list(columns.KINDS)}, got {point.get('kind')!r}")
    row = empty_row(point, **extra)
    row["started_at"], t0 = _now(), time.perf_counter()
    try:
        row["device"] = device = resolve_device(device)
        row.update(gpu_info(device))
        row.update(_probe(point, device, data_root, download) if point["kind"] == "probe"
                   else _train(point, device, data_root, download, on_epoch))
    except Exception as e:  # noqa: BLE001 -- any failure of the science is a result, not a retry
        if environmental(e):
            raise
        row["status"] = "error"
        row["error"] = f"{type(e).__name__}: {e}"[:2000]
        traceback.print_exc(limit=8, file=sys.stderr)  # the worker's log keeps the whole story
    row["seconds"], row["finished_at"] = time.perf_counter() - t0, _now()
    return row


def _body(point: dict, shape):
    from reconent.science import archs

    return archs.build(point["arch"], int(point["depth"]), shape, seed=int(point["seed"]),
                       sigma_w2=float(point["sigma_w2"]), sigma_b2=float(point["sigma_b2"]),
                       activation=point["activation"], **{k: point.get(k) for k in archs.sizes()})


def _probe(point: dict, device: str, data_root, download) -> dict:
    from reconent.science import data
    from reconent.science.probe import probe

    d = data.load(point["dataset"], data_root, download)
    budget = {k: None if point.get(k) is None else int(point[k]) for k in ("steps", "epochs")}
    r = probe(_body(point, d.shape), d.train_x, d.test_x, **budget, checkpoints=point.get("checkpoints") or "auto",
              batch_size=int(point["batch_size"]), lr=float(point["lr"]), rtol=point.get("rtol"),
              train_samples=point.get("train_samples"), eval_samples=point.get("eval_samples"), device=device,
              **{k: point[k] for k in _EVALUATION if point.get(k) is not None})
    s = r.summary()
    out = {col: s[key] for col, key in columns.SOURCES["probe"].items()}
    out.update({k: s[k] for k in _EVALUATION})  # the evaluation settings in effect (None: the neutral)
    out["checkpoints"] = s["checkpoints"]  # likewise ("auto" for a point without the setting)
    out["status"] = s["status"]
    if s["status"] == "diverged":
        out["error"] = "non-finite entropy or decoder loss"
    return out


def _train(point: dict, device: str, data_root, download, on_epoch) -> dict:
    from reconent.science import data
    from reconent.science.train import train

    d = data.load(point["dataset"], data_root, download)
    on = point.get("accuracy_on", "test")
    if on not in ("test", "train"):
        raise ValueError(f"accuracy_on must be 'test' or 'train', got {on!r}")
    ev_x, ev_y = (d.test_x, d.test_y) if on == "test" else (None, None)
    r = train(_body(point, d.shape), d.train_x, d.train_y, ev_x, ev_y, epochs=int(point["epochs"]),
              threshold=float(point["threshold"]), lr=float(point["lr"]), batch_size=int(point["batch_size"]),
              n_classes=d.n_classes, train_samples=point.get("train_samples"), device=device, on_epoch=on_epoch,
              eval_every=point.get("eval_every"), stop=point.get("stop") or "none")
    s = r.summary()
    out = {col: s[key] for col, key in columns.SOURCES["train"].items()}
    out["status"] = s["status"]
    if s["status"] == "diverged":
        out["error"] = "non-finite training loss"
    return out
