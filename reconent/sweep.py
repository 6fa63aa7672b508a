"""Sweeps on Ray Tune: one trial per missing grid point, one Parquet part per finished point.

The store is the source of truth, not Tune's experiment state: a point is done when its part is
valid (`Store.done_ids`). So a rerun after any crash (driver, worker, node) just computes the
points that have no valid part, and a part is written by the trial itself, atomically, the moment
its point finishes. Tune's own results directory is scratch (a temp dir, removed afterwards).

Failures are split on purpose:
- the science failing (bad setting, NaN) is a row with status 'error'/'diverged' and a trial
  that succeeds, so it is never retried (reconent.trial.run_point);
- the infrastructure failing (a dead worker or node, unwritable storage) fails the trial, and
  Tune retries it up to `spec.max_failures` times (FailureConfig).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .trial import point_id as _point_id, run_point

# Quiet, self-contained local Ray: no auth token prompts, no usage-stats, no per-trial JSON/CSV/
# TensorBoard loggers (we store our own Parquet; the loggers cost file I/O on every report).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
FAILED = ("error", "diverged")
JOB_EXCLUDES = [".git", "**/__pycache__", "*.egg-info", ".pytest_cache", "results", "analysis/*.parquet",
                "**/*.parquet", ".venv", "venv", "build", "dist"]


def _ray_env() -> None:
    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)


def point_id(point: dict) -> str:
    try:
        from .spec import point_id as pid
    except ImportError:  # the spec module is the reference; the trial's copy follows the same contract
        pid = _point_id
    return pid(point)


# ---------------------------------------------------------------- trainables (must live in the package:
# Ray workers import them by module path, a function defined in a test or script fails there)
def point_trainable(config: dict) -> None:
    """One sweep point: compute it, write its part from here (durable even if the driver dies), report."""
    import ray
    from ray import tune

    from .store import Store

    ctx, point = config["ctx"], config["point"]
    import torch

    torch.set_num_threads(ctx["threads"])  # Ray gives this trial `threads` CPUs; more would oversubscribe

    def on_epoch(epoch, acc, loss):  # progress of a training point; train() stops early by itself
        tune.report({"epoch": epoch, "accuracy": acc, "loss": loss, "final": False})

    row = run_point(point, ctx["device"], data_root=ctx["data_root"], download=ctx["download"],
                    on_epoch=on_epoch if point["kind"] == "train" else None, spec_hash=ctx["spec_hash"],
                    node_id=ray.get_runtime_context().get_node_id())
    Store(ctx["storage"], ctx["sweep"]).write_part(point["kind"], row)
    tune.report({"final": True, "point_id": row["point_id"], "status": row["status"], "error": row["error"],
                 "compute_seconds": row["seconds"], "node_id": row["node_id"]})


def noop_trainable(config: dict) -> None:
    """The trivial point of `reconent bench sweep`: nothing but the report, to time Ray itself."""
    from ray import tune

    tune.report({"final": True, "point_id": str(config["point"]["i"]), "status": "ok", "compute_seconds": 0.0})


# ---------------------------------------------------------------- progress
def _progress_callback(total: int, enabled: bool):
    from ray import tune
    from tqdm import tqdm

    class Progress(tune.Callback):
        """points done / total, failures and ETA on stderr (tqdm), instead of Tune's trial table."""

        def __init__(self):
            self.bar = tqdm(total=total, file=sys.stderr, disable=not enabled, unit="pt", desc="sweep",
                            dynamic_ncols=True)
            self.seen, self.failed, self.retries, self.statuses = set(), 0, 0, {}

        def _post(self):
            self.bar.set_postfix(failed=self.failed, retries=self.retries, refresh=False)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("final") and trial.trial_id not in self.seen:  # a retried trial reports again
                self.seen.add(trial.trial_id)
                status = result.get("status")
                self.statuses[result.get("point_id")] = status
                self.failed += status in FAILED
                self._post()
                self.bar.update(1)

        def on_trial_recover(self, iteration, trials, trial, **info):
            self.retries += 1
            self._post()
            self.bar.refresh()

        def on_trial_error(self, iteration, trials, trial, **info):  # retries used up: the point is lost
            self.failed += 1
            self._post()
            self.bar.update(1)

        def on_experiment_end(self, trials, **info):
            self.bar.close()

    return Progress()


# ---------------------------------------------------------------- Ray session
class _Ray:
    """Join `address`, or start a private local Ray (short temp dir, no dashboard) and clean it up."""

    def __init__(self, address: str | None, num_cpus: int | None = None):
        self.address, self.num_cpus, self.started, self.tmp = address, num_cpus, False, None

    def __enter__(self):
        import logging

        import ray

        _ray_env()
        if ray.is_initialized():  # a caller (e.g. a notebook) already chose the cluster
            return self
        if self.address:
            ray.init(address=self.address, logging_level=logging.WARNING)
        else:
            # Unix socket paths must stay under ~107 chars: never under a long $TMPDIR.
            self.tmp = tempfile.mkdtemp(prefix="rn", dir="/tmp")
            ray.init(include_dashboard=False, _temp_dir=self.tmp, num_cpus=self.num_cpus or os.cpu_count(),
                     logging_level=logging.WARNING, configure_logging=True)
        self.started = True
        return self

    def __exit__(self, *exc):
        import ray

        if self.started:
            ray.shutdown()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _fit(trainable, points: list[dict], ctx: dict, resources: dict, max_failures: int, progress: bool,
         max_concurrent: int | None = None):
    """Run `points` as one Tune experiment (a grid over the points); returns (ResultGrid, callback)."""
    from ray import tune

    cb = _progress_callback(len(points), progress)
    scratch = tempfile.mkdtemp(prefix="reconent-tune-")
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {k: v for k, v in resources.items() if v}),
            param_space={"point": tune.grid_search(points), "ctx": ctx},
            tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=max_concurrent,
                                        trial_dirname_creator=lambda t: t.trial_id),
            run_config=tune.RunConfig(name="sweep", storage_path=scratch, verbose=0, callbacks=[cb],
                                      failure_config=tune.FailureConfig(max_failures=max_failures)))
        return tuner.fit(), cb
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------- run
def _load(spec, storage):
    from .spec import Spec, load_spec

    if isinstance(spec, Spec):
        if storage is not None:
            raise ValueError("pass the spec as a path to override its storage")
        return spec
    return load_spec(spec, storage_override=storage)


def _local(uri: str) -> bool:
    return "://" not in str(uri) or str(uri).startswith("file://")


def _abs(uri):
    """Trials run with another working directory (and on other nodes): local paths must be absolute."""
    if uri is None or not _local(uri):
        return uri
    return str(Path(str(uri).removeprefix("file://")).expanduser().resolve())


def run(spec, address: str | None = None, storage: str | None = None, progress: bool = True) -> dict:
    """Run every point of `spec` (a path or a Spec) that has no valid part yet; returns a summary.

    Validation comes first, so a bad spec writes nothing. Summary keys: sweep, storage, points,
    skipped (already done), ran, ok, diverged, error, lost (no part after retries), failed
    (diverged + error + lost), seconds.
    """
    from .store import Store

    t0 = time.perf_counter()
    spec = _load(spec, storage)
    storage_uri = _abs(spec.storage)
    store = Store(storage_uri, spec.name)
    points = spec.points()
    done = {kind: set(store.done_ids(kind)) for kind in {p["kind"] for p in points}}
    missing = [p for p in points if point_id(p) not in done[p["kind"]]]
    store.save_spec(spec.resolved())
    summary = {"sweep": spec.name, "storage": storage_uri, "points": len(points),
               "skipped": len(points) - len(missing), "ran": len(missing), "ok": 0, "diverged": 0, "error": 0,
               "lost": 0, "failed": 0, "seconds": 0.0}
    if missing:
        cpu, gpu = float(spec.resources.cpu), float(spec.resources.gpu or 0)
        ctx = {"storage": storage_uri, "sweep": spec.name, "spec_hash": spec.spec_hash, "device": spec.device,
               "data_root": _abs(spec.data_root), "download": bool(spec.download), "threads": max(1, round(cpu))}
        with _Ray(address):
            _check_resources(cpu, gpu, local=address is None)
            grid, cb = _fit(point_trainable, missing, ctx, {"cpu": cpu, "gpu": gpu}, spec.max_failures, progress)
        for r in grid:
            if r.error is not None:
                print(f"reconent: trial failed after retries: {str(r.error).splitlines()[0]}", file=sys.stderr)
        after = {kind: set(store.done_ids(kind)) for kind in done}
        summary["lost"] = sum(point_id(p) not in after[p["kind"]] for p in missing)
        for s in cb.statuses.values():
            summary[s if s in ("ok", "diverged", "error") else "error"] += 1
        summary["failed"] = summary["diverged"] + summary["error"] + summary["lost"]
    summary["seconds"] = time.perf_counter() - t0
    return summary


def _check_resources(cpu: float, gpu: float, local: bool) -> None:
    import ray

    have = ray.cluster_resources()
    # On a local Ray nothing can join later: a trial that does not fit would wait forever.
    if local and (cpu > have.get("CPU", 0) or gpu > have.get("GPU", 0)):
        raise ValueError(f"resources per trial (cpu {cpu:g}, gpu {gpu:g}) exceed this machine's Ray "
                         f"(cpu {have.get('CPU', 0):g}, gpu {have.get('GPU', 0):g})")


# ---------------------------------------------------------------- submit
def project_root() -> Path:
    """The checkout that holds this package (shipped as the job's working_dir), else the cwd."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else Path.cwd()


def submit(spec_path, address: str, storage: str | None = None, wait: bool = False) -> str:
    """Send `reconent sweep run SPEC --address auto` to a cluster as a Ray job; returns the job id.

    The project root is the job's working_dir, so the spec must lie inside it. A local storage path
    is a path on the cluster's nodes (use s3:// or gs:// to get the Parquet files back).
    """
    import shlex

    if not str(address).startswith(("http://", "https://")):
        raise ValueError(f"--address must be the Ray dashboard URL http://HEAD:8265, got {address!r}")
    _load(spec_path, storage)  # validate here: a bad spec is not worth a job
    root, path = project_root(), Path(spec_path).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"spec {spec_path} must be inside the project directory {root} (it ships as the job's "
                         "working_dir)")
    if storage is not None and _local(storage) and not Path(storage).is_absolute():
        raise ValueError(f"--storage {storage!r} is relative; a submitted job needs an absolute path on the cluster "
                         "or an s3:// / gs:// URI")
    # python -m runs the shipped copy of the package (working_dir is on sys.path), even where the
    # cluster has no reconent installed.
    cmd = ["python", "-m", "reconent.cli", "sweep", "run", path.relative_to(root).as_posix(), "--address", "auto"]
    if storage is not None:
        cmd += ["--storage", storage]
    _ray_env()
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    job_id = client.submit_job(entrypoint=shlex.join(cmd), runtime_env={
        "working_dir": str(root), "excludes": JOB_EXCLUDES,
        "env_vars": {k: v for k, v in RAY_ENV.items() if k != "RAY_AUTH_MODE"}})
    if wait:
        _wait_job(client, job_id)
    return job_id


def _wait_job(client, job_id: str, timeout: float = 3600) -> str:
    from ray.job_submission import JobStatus

    end = time.monotonic() + timeout
    while (st := client.get_job_status(job_id)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        if time.monotonic() > end:
            raise TimeoutError(f"job {job_id} still {st} after {timeout:.0f} s")
        time.sleep(1)
    return str(st)


# ---------------------------------------------------------------- status
def _locate(name_or_uri: str, storage: str | None) -> tuple[str, str]:
    """(storage root, sweep name) from a sweep name (+ storage) or the URI of a sweep's folder."""
    s = str(name_or_uri).rstrip("/")
    if "://" in s or os.sep in s or Path(s).is_dir():
        if storage is not None:
            raise ValueError("give either a sweep URI or a name with --storage, not both")
        root, _, name = s.rpartition("/")
        return _abs(root or "."), name
    if storage is None:
        from .spec import Spec

        storage = Spec.model_fields["storage"].default
    return _abs(storage), s


def status(name_or_uri: str, storage: str | None = None) -> dict:
    """Points done (ok), failed (error or diverged), and left (no valid part) of a sweep's latest spec."""
    from .spec import load_spec
    from .store import Store

    root, name = _locate(name_or_uri, storage)
    store = Store(root, name)
    spec_file = _saved_spec(root, name)
    spec = load_spec(spec_file, storage_override=root)
    points = spec.points()
    out = {"sweep": name, "storage": root, "spec_hash": spec.spec_hash, "points": len(points), "ok": 0,
           "diverged": 0, "error": 0}
    for kind in sorted({p["kind"] for p in points}):
        ids = {point_id(p) for p in points if p["kind"] == kind}
        df = store.read(kind)
        if df is not None and len(df):
            for st in df.loc[df["point_id"].isin(ids), "status"]:
                out[st if st in ("ok", "diverged", "error") else "error"] += 1
    out["done"], out["failed"] = out["ok"], out["diverged"] + out["error"]
    out["left"] = out["points"] - out["ok"] - out["failed"]
    return out


def _saved_spec(root: str, name: str) -> str:
    """The latest resolved spec of a sweep, copied to a local temp file if the store is remote."""
    import pyarrow.fs as pafs

    fs, base = pafs.FileSystem.from_uri(root if not _local(root) else Path(root).as_uri())
    src = f"{base.rstrip('/')}/{name}/specs/spec.yaml"
    try:
        with fs.open_input_stream(src) as f:
            text = f.read()
    except (FileNotFoundError, OSError):
        raise ValueError(f"no sweep {name!r} under {root} (looked for {src})") from None
    tmp = Path(tempfile.mkdtemp(prefix="reconent-status-")) / "spec.yaml"
    tmp.write_bytes(text)
    return str(tmp)


# ---------------------------------------------------------------- bench
def bench_sweep(n: int = 20, num_cpus: int | None = None, progress: bool = False) -> dict:
    """Orchestration overhead per point on a local Ray, for trivial points and tiny real probe points.

    overhead/point = (wall of Tuner.fit − Σ trial compute seconds / concurrency) / N, where compute is
    what run_point measured inside the trial; so it holds scheduling, actor reuse, config transfer,
    result reporting, the Parquet part write and the driver's bookkeeping. Ray's start-up is reported
    apart (once per sweep, not per point).
    """
    from .store import Store

    num_cpus = num_cpus or os.cpu_count()
    out = {"bench": "sweep", "n": n, "concurrency": num_cpus}
    t = time.perf_counter()
    with _Ray(None, num_cpus), tempfile.TemporaryDirectory(prefix="reconent-bench-") as storage:
        out["ray_start_seconds"] = time.perf_counter() - t
        base = dict(sweep="bench", kind="probe", dataset="mnist5k", arch="mlp", activation="tanh", width=None,
                    channels=None, depth=2, sigma_w2=1.76, sigma_b2=0.05, epochs=1, batch_size=64, lr=1e-3,
                    rtol=0.005, train_samples=128, eval_samples=16)
        cases = {"trivial": (noop_trainable, [{"i": i} for i in range(n)]),
                 "probe": (point_trainable, [dict(base, seed=i) for i in range(n)])}
        ctx = {"storage": storage, "sweep": "bench", "spec_hash": "bench", "device": "cpu", "data_root": None,
               "download": False, "threads": 1}
        for name, (fn, points) in cases.items():
            t = time.perf_counter()
            grid, cb = _fit(fn, points, ctx, {"cpu": 1}, 0, progress)
            wall = time.perf_counter() - t
            compute = sum(r.metrics.get("compute_seconds", 0.0) for r in grid)
            bad = [r.error for r in grid if r.error is not None] + [s for s in cb.statuses.values() if s != "ok"]
            if bad:
                raise RuntimeError(f"bench sweep: {len(bad)} {name} points failed: {bad[0]}")
            out[name] = {"wall_seconds": wall, "compute_seconds": compute,
                         "overhead_per_point": (wall - compute / num_cpus) / n}
        out["probe"]["parts"] = len(Store(storage, "bench").done_ids("probe"))
    return out


# ---------------------------------------------------------------- CLI
def cmd_run(a) -> None:
    s = run(a.spec, address=a.address, storage=a.storage, progress=not a.json)
    _print(s, a.json, lambda o: print(
        f"sweep {o['sweep']}: {o['points']} points, {o['skipped']} already done, ran {o['ran']}: {o['ok']} ok, "
        f"{o['diverged']} diverged, {o['error']} error, {o['lost']} lost ({o['seconds']:.1f} s) -> "
        f"{o['storage']}/{o['sweep']}"))
    if s["lost"]:
        raise SystemExit(1)  # infrastructure gave up on some points: rerun the same command to finish them


def cmd_submit(a) -> None:
    job = submit(a.spec, a.address, a.storage)
    print(f"submitted job {job}\n  follow: ray job logs --address {a.address} --follow {job}\n"
          f"  status: ray job status --address {a.address} {job}")


def cmd_status(a) -> None:
    _print(status(a.sweep, a.storage), a.json, lambda o: print(
        f"sweep {o['sweep']} ({o['storage']}): {o['points']} points: {o['done']} done, {o['failed']} failed "
        f"({o['diverged']} diverged, {o['error']} error), {o['left']} left"))


def cmd_bench(a) -> None:
    _print(bench_sweep(a.n), a.json, lambda o: print(
        f"bench sweep: {o['n']} points each, local Ray with {o['concurrency']} CPUs "
        f"(start-up {o['ray_start_seconds']:.1f} s, not per point)\n" + "\n".join(
            f"  {k:>7}: wall {o[k]['wall_seconds']:.2f} s, compute {o[k]['compute_seconds']:.2f} s -> "
            f"overhead {o[k]['overhead_per_point']:.3f} s/point" for k in ("trivial", "probe"))))


def _print(obj: dict, as_json: bool, table) -> None:
    print(json.dumps(obj)) if as_json else table(obj)


def register(sub, bench) -> None:
    from .cli import Parser, pos_int

    sw = sub.add_parser("sweep", help="run, submit and inspect sweeps on Ray Tune").add_subparsers(
        dest="sweep_command", required=True, parser_class=Parser)
    r = sw.add_parser("run", help="run the points of a sweep spec that have no result yet")
    r.add_argument("spec", help="sweep spec YAML")
    r.add_argument("--address", default=None, help="join this Ray cluster ('auto', HOST:6379); default: local Ray")
    r.add_argument("--storage", default=None, help="override the spec's storage (path, s3://, gs://)")
    r.add_argument("--json", action="store_true", help="print the summary as one JSON object, no progress bar")
    r.set_defaults(func=cmd_run)
    s = sw.add_parser("submit", help="send the sweep to a cluster as a Ray job")
    s.add_argument("spec")
    s.add_argument("--address", required=True, help="the Ray dashboard URL, http://HEAD:8265")
    s.add_argument("--storage", default=None, help="storage as seen from the cluster (absolute path, s3://, gs://)")
    s.set_defaults(func=cmd_submit)
    st = sw.add_parser("status", help="points done, failed and left")
    st.add_argument("sweep", metavar="NAME|URI", help="a sweep name (with --storage) or the URI of its folder")
    st.add_argument("--storage", default=None)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    b = bench.add_parser("sweep", help="orchestration overhead per point on local Ray")
    b.add_argument("--n", type=pos_int, default=20)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)
