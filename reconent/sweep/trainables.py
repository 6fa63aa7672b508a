"""The functions Tune runs in its workers, one call per point.

They must live in the package: Ray workers import them by module path (a function defined in a
test or a script fails there).
"""
from __future__ import annotations

from .columns import point_id
from .trial import run_point


def point_trainable(config: dict) -> None:
    """One sweep point: compute it, write its part from here (durable even if the driver dies), report."""
    import ray
    import torch
    from ray import tune

    from .store import Store

    ctx, point = config["ctx"], config["point"]
    torch.set_num_threads(ctx["threads"])  # Ray gives this trial `threads` CPUs; more would oversubscribe

    def on_epoch(epoch, acc, loss):  # progress of a training point; train() stops early by itself
        tune.report({"epoch": epoch, "accuracy": acc, "loss": loss, "final": False})

    store = Store(ctx["storage"], ctx["sweep"])
    try:
        row = run_point(point, ctx["device"], data_root=ctx["data_root"], download=ctx["download"],
                        on_epoch=on_epoch if point["kind"] == "train" else None, spec_hash=ctx["spec_hash"],
                        code_version=ctx.get("code_version"),
                        node_id=ray.get_runtime_context().get_node_id())
        store.write_part(point["kind"], row)
    except Exception as e:
        # Environmental (run_point raises only those) or the storage itself: fail the trial so that
        # Tune's FailureConfig retries it; no part is left, so the next run computes it again.
        store.record_failure(point["kind"], point_id(point), f"{type(e).__name__}: {e}")
        raise
    finally:
        release_memory()
    tune.report({"final": True, "point_id": row["point_id"], "status": row["status"], "error": row["error"],
                 "compute_seconds": row["seconds"], "node_id": row["node_id"],
                 "reached": row.get("reached"),  # the verdict a search strategy learns from
                 "epochs_run": row.get("epochs_run")})  # and, with compute_seconds, what it cost


def release_memory() -> None:
    """Give a finished trial's memory back before the reused actor runs the next one.

    CUDA: the caching allocator's blocks (fractional trials share the GPU). Linux: glibc keeps what a
    trial freed in the malloc arena of the thread it ran in, and Tune runs each trial in a new thread;
    a reused actor grew from 4.6 to 11.9 GB over five depth-200 probes until Ray's memory monitor
    killed it. malloc_trim hands those free pages back to the OS.
    """
    import ctypes

    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc's, from the process's own symbols; absent elsewhere
    except (AttributeError, OSError, TypeError):
        return
    trim(0)


def noop_trainable(config: dict) -> None:
    """The trivial point of `reconent bench sweep`: nothing but the report, to time Ray itself."""
    from ray import tune

    tune.report({"final": True, "point_id": str(config["point"]["i"]), "status": "ok", "compute_seconds": 0.0})


def sleep_trainable(config: dict) -> None:
    """A point of known cost for `reconent bench sweep --sleep S`: sleeps S seconds, so the bench's
    compute accounting can be checked against a figure it did not measure itself."""
    import time

    from ray import tune

    t = time.perf_counter()
    time.sleep(config["point"]["sleep"])
    tune.report({"final": True, "point_id": str(config["point"]["i"]), "status": "ok",
                 "compute_seconds": time.perf_counter() - t})
