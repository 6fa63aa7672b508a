"""A Ray session for the sweep driver, and one Tune experiment over a list of points.

`RaySession` joins a cluster or starts a private local Ray and cleans it up; `fit` runs points
(a list, or a search strategy) as one Tune experiment with the progress callback; `slots` says how
many trials fit on a local Ray.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from ..errors import UserError

# Quiet, self-contained local Ray: no auth token prompts, no usage-stats, no per-trial JSON/CSV/
# TensorBoard loggers (we store our own Parquet; they cost ~25 ms of file I/O per point), and the
# legacy output engine, whose verbose=0 is really silent (the new one still prints a table).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
           "RAY_AIR_NEW_OUTPUT": "0"}


def ray_env() -> None:
    """Set RAY_ENV (where unset) in this process, before Ray starts or a job is submitted."""
    import logging

    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    # Without the loggers, ResultGrid warns that it found no result.json; the metrics it needs
    # come from memory all the same.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


class RaySession:
    """Join `address`, or start a private local Ray (short temp dir, no dashboard) and clean it up."""

    def __init__(self, address: str | None, num_cpus: int | None = None):
        self.address, self.num_cpus, self.started, self.tmp = address, num_cpus, False, None

    def __enter__(self):
        import logging

        import ray

        ray_env()
        if ray.is_initialized():  # a caller (e.g. a notebook) already chose the cluster
            return self
        if self.address:
            ray.init(address=self.address, logging_level=logging.WARNING)
        else:
            # Unix socket paths must stay under ~107 chars: never under a long $TMPDIR.
            self.tmp = tempfile.mkdtemp(prefix="rn", dir=os.environ.get("RECONENT_RAY_TMPDIR", "/tmp"))
            with _loopback():
                ray.init(include_dashboard=False, _temp_dir=self.tmp, num_cpus=self.num_cpus or os.cpu_count(),
                         logging_level=logging.WARNING, configure_logging=True, _node_ip_address="127.0.0.1")
        self.started = True
        return self

    def __exit__(self, *exc):
        import ray

        if self.started:
            ray.shutdown()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.contextmanager
def _loopback():
    """A private Ray that listens on 127.0.0.1 only: it serves nobody else, and anyone who can reach a
    Ray node can run code on it. On Linux, Ray turns a node IP of 127.0.0.1 into the machine's
    reachable address (and binds its servers to it or to 0.0.0.0); its switch for single-machine
    platforms keeps loopback. Its processes read the switch from the environment they start with;
    this process reads Ray's constant, so both are set for the start and restored afterwards."""
    from ray._private import ray_constants

    key, saved = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR)
    saved_const = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[key], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_const
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved


def fit(trainable, points, ctx: dict, resources: dict, max_failures: int, progress: bool,
        max_concurrent: int | None = None, total: int | None = None):
    """Run one Tune experiment, one trial per point; returns (ResultGrid, callback).

    `points` is a list of points or a search Strategy (reconent.sweep.search). Tune gets them one trial at
    a time from a Searcher: its per-trial copy is `{"ctx": ctx}` plus one point, never the whole list
    (`tune.grid_search(points)` deep-copies the list per variant: O(N²)). The searcher caps the trials in
    flight at `max_concurrent`, so a strategy can propose a batch the size of the free slots. `total`:
    the progress bar's length (default: the number of points; a search gives its budget).
    Tune's results directory is scratch (a temp dir, removed afterwards): the trials write their parts."""
    from ray import tune

    from .lease import check_held
    from .progress import progress_callback
    from .search.feed import StrategySearcher
    from .search.grid import GridStrategy

    check_held()  # no new experiment for a driver that lost its sweep's lease
    survive_memory_kills()
    strategy = GridStrategy(points) if isinstance(points, list) else points
    cb = progress_callback(total if total is not None else len(points), progress)
    scratch = tempfile.mkdtemp(prefix="reconent-tune-")
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {k: v for k, v in resources.items() if v}),
            param_space={"ctx": ctx},
            tune_config=tune.TuneConfig(search_alg=StrategySearcher(strategy, max_concurrent), num_samples=-1,
                                        reuse_actors=True, trial_dirname_creator=lambda t: t.trial_id),
            run_config=tune.RunConfig(name="sweep", storage_path=scratch, verbose=0, callbacks=[cb],
                                      failure_config=tune.FailureConfig(max_failures=max_failures)))
        return tuner.fit(), cb
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def survive_memory_kills() -> None:
    """Make Tune treat a trial worker killed by Ray's memory monitor as a dead actor, which it retries.

    Ray reports a kill that lands while an actor task runs as `OutOfMemoryError` on that task (a kill
    during the actor's start arrives as its start failing, which Tune already handles). Tune's actor
    manager (Ray 2.60) expects only `RayActorError` or `RayTaskError` from a task and raises any other
    error out of `tuner.fit()`: one memory kill ended the whole sweep. The worker is gone either way, so
    the error becomes the `RayActorError` Tune handles for a dead worker: the trial is retried up to
    `max_failures` times, then lost (ray-project/ray#29736 on the two ways Ray reports it). Idempotent."""
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.exceptions import OutOfMemoryError, RayActorError

    failed = RayActorManager._actor_task_failed
    if getattr(failed, "_reconent", False):
        return

    def task_failed(self, tracked_actor_task, exception):
        if isinstance(exception, OutOfMemoryError):
            exception = RayActorError(error_msg=f"OutOfMemoryError: {exception}")
        return failed(self, tracked_actor_task, exception)

    task_failed._reconent = True
    RayActorManager._actor_task_failed = task_failed


def slots(cpu: float, gpu: float, local: bool) -> int | None:
    """How many trials fit at once on a local Ray (None on a cluster, which may grow)."""
    import ray

    if not local:
        return None
    have = ray.cluster_resources()
    # Nothing can join a local Ray later: a trial that does not fit would wait forever.
    if cpu > have.get("CPU", 0) or gpu > have.get("GPU", 0):
        raise UserError(f"resources per trial (cpu {cpu:g}, gpu {gpu:g}) exceed this machine's Ray "
                         f"(cpu {have.get('CPU', 0):g}, gpu {have.get('GPU', 0):g})")
    return int(min(have["CPU"] // cpu, have.get("GPU", 0) // gpu if gpu else float("inf")))
