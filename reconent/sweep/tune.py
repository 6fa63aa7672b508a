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

from .spec import point_id
from .trial import run_point, versions

# Quiet, self-contained local Ray: no auth token prompts, no usage-stats, no per-trial JSON/CSV/
# TensorBoard loggers (we store our own Parquet; they cost ~25 ms of file I/O per point), and the
# legacy output engine, whose verbose=0 is really silent (the new one still prints a table).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
           "RAY_AIR_NEW_OUTPUT": "0"}
FAILED = ("error", "diverged")
JOB_EXCLUDES = [".git", "**/__pycache__", "*.egg-info", ".pytest_cache", "results", "**/*.parquet", ".venv",
                "venv", "build", "dist"]


def _ray_env() -> None:
    import logging

    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    # Without the loggers, ResultGrid warns that it found no result.json; the metrics it needs
    # come from memory all the same.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


# ---------------------------------------------------------------- trainables (must live in the package:
# Ray workers import them by module path, a function defined in a test or script fails there)
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

    row = run_point(point, ctx["device"], data_root=ctx["data_root"], download=ctx["download"],
                    on_epoch=on_epoch if point["kind"] == "train" else None, spec_hash=ctx["spec_hash"],
                    code_version=ctx.get("code_version"),
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
            self.seen, self.failed, self.retries, self.statuses, self.times = set(), 0, 0, {}, []

        def _post(self):
            self.bar.set_postfix(failed=self.failed, retries=self.retries, refresh=False)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("final") and trial.trial_id not in self.seen:  # a retried trial reports again
                self.seen.add(trial.trial_id)
                status = result.get("status")
                self.statuses[result.get("point_id")] = status
                self.times.append((time.perf_counter(), result.get("compute_seconds", 0.0)))
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
            self.tmp = tempfile.mkdtemp(prefix="rn", dir=os.environ.get("RECONENT_RAY_TMPDIR", "/tmp"))
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
def _load(spec, storage, check_storage: bool = True):
    from .spec import Spec, load_spec

    if isinstance(spec, Spec):
        if storage is not None:
            raise ValueError("pass the spec as a path to override its storage")
        return spec
    return load_spec(spec, storage_override=storage, check_storage=check_storage)


def _local(uri: str) -> bool:
    return "://" not in str(uri) or str(uri).startswith("file://")


def _abs(uri):
    """Trials run with another working directory (and on other nodes): local paths must be absolute."""
    if uri is None or not _local(uri):
        return uri
    return str(Path(str(uri).removeprefix("file://")).expanduser().resolve())


def run(spec, address: str | None = None, storage: str | None = None, progress: bool = True) -> dict:
    """Run every point of `spec` (a path or a Spec) that has no valid part yet; returns a summary.

    Trials write their parts themselves: on a multi-machine cluster the storage must be shared
    (s3://, gs://, or a network file system mounted at the same path everywhere).
    Validation comes first, so a bad spec writes nothing. Summary keys: sweep, storage, points,
    skipped (had a valid part), ran (trials started), done (= ok), failed (= diverged + error +
    lost, where lost means no part even after `max_failures` retries), retries (infrastructure
    failures Tune recovered from), seconds.
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
               "skipped": len(points) - len(missing), "ran": len(missing), "done": 0, "failed": 0, "ok": 0,
               "diverged": 0, "error": 0, "lost": 0, "retries": 0, "seconds": 0.0}
    if missing:
        cpu, gpu = float(spec.resources.cpu), float(spec.resources.gpu or 0)
        ctx = {"storage": storage_uri, "sweep": spec.name, "spec_hash": spec.spec_hash, "device": spec.device,
               "data_root": _abs(spec.data_root), "download": bool(spec.download), "threads": max(1, round(cpu)),
               "code_version": versions()["code_version"]}  # the driver's checkout: workers may have no .git
        with _Ray(address):
            slots = _slots(cpu, gpu, local=address is None)
            grid, cb = _fit(point_trainable, missing, ctx, {"cpu": cpu, "gpu": gpu}, spec.max_failures, progress,
                            max_concurrent=slots)
        for r in grid:
            if r.error is not None:
                print(f"reconent: trial failed after retries: {str(r.error).splitlines()[0]}", file=sys.stderr)
        after = {kind: set(store.done_ids(kind)) for kind in done}
        summary["lost"] = sum(point_id(p) not in after[p["kind"]] for p in missing)
        for s in cb.statuses.values():
            summary[s if s in ("ok", "diverged", "error") else "error"] += 1
        summary["done"], summary["retries"] = summary["ok"], cb.retries
        summary["failed"] = summary["diverged"] + summary["error"] + summary["lost"]
    summary["seconds"] = time.perf_counter() - t0
    return summary


def _slots(cpu: float, gpu: float, local: bool) -> int | None:
    """How many trials fit at once on a local Ray (None on a cluster, which may grow)."""
    import ray

    if not local:
        return None
    have = ray.cluster_resources()
    # Nothing can join a local Ray later: a trial that does not fit would wait forever.
    if cpu > have.get("CPU", 0) or gpu > have.get("GPU", 0):
        raise ValueError(f"resources per trial (cpu {cpu:g}, gpu {gpu:g}) exceed this machine's Ray "
                         f"(cpu {have.get('CPU', 0):g}, gpu {have.get('GPU', 0):g})")
    return int(min(have["CPU"] // cpu, have.get("GPU", 0) // gpu if gpu else float("inf")))


# ---------------------------------------------------------------- submit
def project_root() -> Path:
    """The checkout that holds this package (shipped as the job's working_dir), else the cwd."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else Path.cwd()


def submit(spec_path, address: str, storage: str | None = None, wait: bool = False) -> str:
    """Send `reconent sweep run SPEC --address auto` to a cluster as a Ray job; returns the job id.

    The project root ships as the job's working_dir (so the cluster runs this very code), and the
    spec travels in the job's environment, so it may live anywhere on this machine. A local
    storage path is a path on the cluster's nodes: use s3:// or gs:// to get the files back.
    """
    import shlex

    if not str(address).startswith(("http://", "https://")):
        raise ValueError(f"--address must be the Ray dashboard URL http://HEAD:8265, got {address!r}")
    # Validate here (a bad spec is not worth a job), but the storage is the cluster's, not ours to probe.
    target = _load(spec_path, storage, check_storage=False).storage
    if _local(target) and not Path(target.removeprefix("file://")).is_absolute():
        raise ValueError(f"storage {target!r} is relative, so it would land in the job's temporary working_dir; "
                         "pass --storage with an absolute path on the cluster or an s3:// / gs:// URI")
    name = f".reconent-submitted-{Path(spec_path).name}"
    # `python -m` runs the shipped copy of the package (the working_dir is on sys.path), even
    # where the cluster has no reconent installed.
    run_cmd = ["python", "-m", "reconent.cli", "sweep", "run", name, "--address", "auto"]
    if storage is not None:
        run_cmd += ["--storage", storage]
    entrypoint = f'printf "%s" "$RECONENT_SPEC_YAML" > {shlex.quote(name)} && {shlex.join(run_cmd)}'
    _ray_env()
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env={
        "working_dir": str(project_root()), "excludes": JOB_EXCLUDES,
        "env_vars": {**{k: v for k, v in RAY_ENV.items() if k != "RAY_AUTH_MODE"},
                     "RECONENT_SPEC_YAML": Path(spec_path).read_text(),
                     # the job's working_dir is a copy without .git: send the sha of the code submitted
                     "RECONENT_CODE_VERSION": versions()["code_version"]}})
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
    if "://" in s or "/" in s or Path(s).is_dir():
        if storage is not None:
            raise ValueError("give either a sweep URI or a sweep name with --storage, not both")
        root, _, name = s.rpartition("/")
        return _abs(root or "."), name
    from .spec import Spec

    return _abs(storage or Spec.model_fields["storage"].default), s


def status(name_or_uri: str, storage: str | None = None) -> dict:
    """Points done (ok), failed (error or diverged) and left (no valid part) of the sweep's latest spec.

    Read-only: a corrupt part counts as left here (the next run quarantines and recomputes it)."""
    from .spec import load_spec
    from .store import Store

    root, name = _locate(name_or_uri, storage)
    store = Store(root, name)
    saved = store.load_spec()
    if saved is None:
        raise ValueError(f"no sweep {name!r} under {root} (no {store.path('specs', 'spec.yaml')})")
    spec = load_spec(saved, storage_override=root, check_storage=False)
    points = spec.points()
    out = {"sweep": name, "storage": root, "spec_hash": spec.spec_hash, "points": len(points), "done": 0,
           "failed": 0, "left": 0, "ok": 0, "diverged": 0, "error": 0}
    for kind in sorted({p["kind"] for p in points}):
        df = store.read(kind)
        got = dict(zip(df["point_id"], df["status"]))
        for p in points:
            if p["kind"] == kind:
                st = got.get(point_id(p))
                out["left" if st is None else st if st in ("ok", "diverged") else "error"] += 1
    out["done"], out["failed"] = out["ok"], out["diverged"] + out["error"]
    return out


# ---------------------------------------------------------------- bench
def bench_sweep(n: int = 50, num_cpus: int | None = None, progress: bool = False) -> dict:
    """Orchestration overhead per point on a local Ray, for trivial points and tiny real probe points.

    overhead_per_point = (wall of Tuner.fit − Σ trial compute seconds / concurrency) / N, where compute
    is what run_point measured inside each trial. It holds everything Ray and Tune add: starting the
    trial actors, scheduling, config transfer, reporting, the Parquet part write, driver bookkeeping.
    Also given apart: first_result_seconds (fit start to the first finished point: actor start-up
    and imports, paid once per sweep, not per point) and, for trivial points, steady_overhead_per_point
    = time between the first and the last result / (N − 1): the cost of one more point on reused
    actors. (With real points the actors' start-ups overlap later results, so no clean split.)
    Ray's own start (ray_start_seconds) is outside the wall.
    """
    from .store import Store

    num_cpus = num_cpus or os.cpu_count()
    out = {"bench": "sweep", "n": n, "concurrency": num_cpus, "load_average": os.getloadavg()[0]}
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
            bad = [r.error for r in grid if r.error is not None] + [s for s in cb.statuses.values() if s != "ok"]
            if bad:
                raise RuntimeError(f"bench sweep: {len(bad)} {name} points failed: {bad[0]}")
            compute = sum(c for _, c in cb.times)
            out[name] = {"wall_seconds": wall, "compute_seconds": compute,
                         "overhead_per_point": (wall - compute / num_cpus) / n,
                         "first_result_seconds": cb.times[0][0] - t}
            if name == "trivial":  # no compute at all: the pace after the first result is Ray's alone
                out[name]["steady_overhead_per_point"] = (cb.times[-1][0] - cb.times[0][0]) / max(1, n - 1)
        out["probe"]["parts"] = len(Store(storage, "bench").done_ids("probe"))
    return out


# ---------------------------------------------------------------- CLI
def cmd_run(a) -> None:
    s = run(a.spec, address=a.address, storage=a.storage, progress=not a.json)
    _print(s, a.json, lambda o: print(
        f"sweep {o['sweep']}: {o['points']} points, {o['skipped']} already done, ran {o['ran']}: {o['ok']} ok, "
        f"{o['diverged']} diverged, {o['error']} error, {o['lost']} lost, {o['retries']} retries "
        f"({o['seconds']:.1f} s) -> {o['storage']}/{o['sweep']}"))
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
        f"bench sweep: {o['n']} points each, local Ray with {o['concurrency']} CPUs, load average "
        f"{o['load_average']:.1f} (Ray start-up {o['ray_start_seconds']:.1f} s, not counted)\n" + "\n".join(
            f"  {k:>7}: wall {o[k]['wall_seconds']:.2f} s, compute {o[k]['compute_seconds']:.2f} s -> overhead "
            f"{o[k]['overhead_per_point']:.3f} s/point (first result after {o[k]['first_result_seconds']:.2f} s"
            + (f", then one every {o[k]['steady_overhead_per_point']:.3f} s" if k == "trivial" else "") + ")"
            for k in ("trivial", "probe"))))


def _print(obj: dict, as_json: bool, table) -> None:
    print(json.dumps(obj)) if as_json else table(obj)


def register(sub, bench) -> None:
    from reconent.cli import Parser, pos_int

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
    b.add_argument("--n", type=pos_int, default=50, help="points of each kind (default 50)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)
