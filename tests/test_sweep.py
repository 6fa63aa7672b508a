"""Sweeps end to end on real Ray: local, a loopback multi-node cluster, killed drivers and workers.

Every Ray test starts its own private Ray (unique temp dir and ports) and ends the processes it
started by PID (conftest.Procs); none calls `ray stop`, which would kill other people's Ray.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import LoopbackCluster, kill_group, wait_for
from reconent.cli import main
from reconent.errors import UserError
from reconent.sweep.trial import RESULTS, run_point, versions
from reconent.sweep.columns import SCHEMA_VERSION, point_id

PROBE_RESULTS, TRAIN_RESULTS = RESULTS["probe"], RESULTS["train"]

TINY = {"epochs": 1, "batch_size": 64, "lr": 1e-3, "rtol": 0.005, "train_samples": 128, "eval_samples": 16}
SLOWER = {"epochs": 2, "train_samples": 2048, "eval_samples": 64}  # ~1 s a point: time to kill things mid-sweep
COMMON = ["schema_version", "sweep", "point_id", "spec_hash", "kind", "dataset", "arch", "activation", "width",
          "channels", "depth", "sigma_w2", "sigma_b2", "seed", "status", "error", "seconds", "device", "node",
          "node_id", "started_at", "finished_at", "reconent_version", "torch_version", "ray_version",
          "python_version", "code_version", "gpu_name", "cuda_version", "cudnn_version"]
PROBE_EVAL = ["eval_depths", "entropy_dtype", "tf32"]  # probe settings left out of the id at their neutral value


def write_spec(path: Path, name: str, storage: Path, grid: dict, probe: dict | None = None,
               train: dict | None = None, **top) -> Path:
    spec = {"name": name, "dataset": "mnist5k", "arch": "mlp", "storage": str(storage), "device": "cpu",
            "resources": {"cpu": 1, "gpu": 0}, "grid": grid, "probe": {**TINY, **(probe or {})},
            "train": train or {"points": "none"}, **top}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def parts(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.glob("part-*.parquet"))}


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {n: (p.stat().st_mtime_ns, p.read_bytes()) for n, p in parts(folder).items()}


def point_ids(spec_path: Path, kind: str) -> set[str]:
    from reconent.sweep.spec import load_spec, point_id

    return {point_id(p) for p in load_spec(spec_path).points() if p["kind"] == kind}


# ---------------------------------------------------------------- no Ray
def test_sweep_status_runs_without_ray_or_optuna(tmp_path):
    """`sweep status` (and its URI helpers) import neither Ray nor Optuna, checked in a fresh interpreter
    that imports the module and reads a stored sweep with it."""
    from reconent.sweep.spec import load_spec
    from reconent.sweep.store import Store

    spec = load_spec(write_spec(tmp_path / "s.yaml", "st", tmp_path / "store",
                                {"sigma_w2": [1.0, 2.0], "sigma_b2": [0.05], "depth": [2], "seed": [0]}))
    Store(str(tmp_path / "store"), "st").save_spec(spec.resolved())
    script = ("import json, sys\n"
              "from reconent.sweep.status import status\n"
              "imported = [m for m in ('ray', 'optuna') if m in sys.modules]\n"
              f"s = status({str(tmp_path / 'store' / 'st')!r})\n"
              "print(json.dumps([imported, [m for m in ('ray', 'optuna') if m in sys.modules], s['left']]))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [[], [], 2]
    # the spec file names the same sweep (its name and storage), as a user passing `sweep run`'s argument expects
    from reconent.sweep.status import status

    assert status(str(tmp_path / "s.yaml"))["left"] == 2
    with pytest.raises(UserError, match="no sweep 'st' under"):
        status(str(tmp_path / "s.yaml"), storage=str(tmp_path / "elsewhere"))


def test_run_point_row_and_science_errors_are_data():
    base = {"sweep": "s", "kind": "probe", "dataset": "mnist5k", "arch": "mlp", "activation": "tanh", "width": None,
            "channels": None, "depth": 2, "sigma_w2": 1.76, "sigma_b2": 0.05, "seed": 0, **TINY}
    row = run_point(base, "cpu", spec_hash="h")
    assert set(COMMON + [*TINY, *PROBE_EVAL, "steps", "checkpoints", *PROBE_RESULTS]) == set(row)
    assert row["gpu_name"] is None and row["eval_depths"] == "all"  # a point without the setting: the neutral one
    # a budget of one pass over 128 samples: 2 steps, read at steps/16 (0: none), steps/4 (0: none) and the end
    assert (row["steps"], row["epochs"], row["steps_run"], row["checkpoints"]) == (None, 1, 2, "auto")
    assert row["checkpoint_steps"] == [2] and row["checkpoint_norm_median"] == [row["relative_entropy_norm_median"]]
    assert point_id({k: row[k] for k in base}) == point_id({**base, **{k: row[k] for k in PROBE_EVAL}}) == row["point_id"]
    assert row["status"] == "ok" and row["error"] is None and len(row["decoder_loss"]) == 2
    assert row["started_at"] <= row["finished_at"] and row["device"] == "cpu" and row["spec_hash"] == "h"
    bad = run_point({**base, "activation": "swish"}, "cpu")  # raises inside the library -> a row
    assert bad["status"] == "error" and "swish" in bad["error"] and bad["cutoff"] is None
    assert set(bad) == set(row)


def test_code_version_is_the_git_sha_or_what_the_submitter_sent(monkeypatch):
    import subprocess

    from reconent.sweep import trial

    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(trial.__file__).parent).stdout.strip()
    if len(head) == 40:  # a git checkout (CI's clean clone is one)
        assert trial._code_version("x") == head
    monkeypatch.setenv("RECONENT_CODE_VERSION", "abc123")
    assert trial._code_version("x") == "abc123"


def test_train_point_stops_early_and_reports_each_epoch():
    seen = []
    point = {"sweep": "s", "kind": "train", "dataset": "mnist5k", "arch": "mlp", "activation": "tanh", "width": 64,
             "channels": None, "depth": 1, "sigma_w2": 1.0, "sigma_b2": 0.05, "seed": 0, "epochs": 20,
             "threshold": 0.3, "lr": 0.05, "batch_size": 32, "train_samples": 256, "accuracy_on": "test"}
    row = run_point(point, "cpu", on_epoch=lambda *a: seen.append(a))
    assert set(row) >= set(TRAIN_RESULTS)
    assert row["status"] == "ok" and row["reached"] and row["epochs_run"] < 20
    assert len(row["accuracy"]) == len(row["train_loss"]) == row["epochs_run"] == len(seen)
    assert row["final_accuracy"] == row["accuracy"][-1] > 0.3


def test_train_result_columns_are_read_from_the_science_summary():
    """The trial fills each declared result column from TrainResult.summary() by columns.SOURCES (`epochs_run` <-
    `epochs`): a result column whose summary key does not exist fails here, not in a sweep."""
    from reconent.science.train import TrainResult
    from reconent.sweep.columns import SOURCES

    s = TrainResult([0.5, 0.9], [1.0, 0.5], 2, 0.8, True, "ok", 1.0, "cpu").summary()
    assert SOURCES["train"]["epochs_run"] == "epochs" and set(SOURCES["train"].values()) <= set(s)
    assert list(SOURCES["train"]) == TRAIN_RESULTS


def test_bad_spec_exits_2_and_writes_nothing(tmp_path, capsys):
    store = tmp_path / "store"
    spec = write_spec(tmp_path / "bad.yaml", "bad", store, {"sigma_w2": [1.0], "sigma_b2": [0.05], "depth": [0],
                                                          "seed": [0]})
    assert main(["sweep", "run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reconent: error:") and "depth" in err and err.count("\n") == 1
    assert not store.exists()


def test_submit_validates_before_contacting_a_cluster(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.yaml", "s", tmp_path / "store", {"sigma_w2": [1.0], "sigma_b2": [0.05],
                                                                     "depth": [1], "seed": [0]})
    assert main(["sweep", "submit", str(spec), "--address", "127.0.0.1:6379"]) == 2
    assert "http://HEAD:8265" in capsys.readouterr().err
    # a relative local storage would land in the job's temporary working_dir
    assert main(["sweep", "submit", str(spec), "--address", "http://127.0.0.1:1", "--storage", "out"]) == 2
    assert "absolute path" in capsys.readouterr().err
    assert main(["sweep", "submit", str(spec)]) == 2  # --address is required


# ---------------------------------------------------------------- local Ray
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One finished tiny sweep: 4 probe points (2 of them diverge) and their 4 training points."""
    from reconent.sweep.run import run

    d = tmp_path_factory.mktemp("tiny")
    spec = write_spec(d / "tiny.yaml", "tiny", d / "store",
                      {"activation": ["relu"], "sigma_w2": [2.0, 1e60], "sigma_b2": [0.05], "depth": [2, 3],
                       "seed": [0]},
                      train={"points": "all", "epochs": 6, "threshold": 0.3, "lr": 0.05, "batch_size": 32,
                                    "train_samples": 256})
    t = time.perf_counter()
    summary = run(spec, progress=False)
    return spec, d / "store" / "tiny", summary, time.perf_counter() - t


@pytest.mark.slow
def test_local_sweep_rows_match_grid(tiny):
    spec, folder, s, _ = tiny
    assert s["points"] == 8 and s["ran"] == 8 and s["skipped"] == 0 and s["lost"] == 0
    # divergence is a result, not a retry
    assert s["ok"] == 4 and s["diverged"] == 4 and s["retries"] == 0 and s["failed"] == 4
    for kind, extra in (("probe", [*TINY, *PROBE_RESULTS]), ("train", [*TRAIN_RESULTS])):
        files = parts(folder / kind)
        assert len(files) == 4
        df = pd.read_parquet(folder / kind)  # plain pandas on the folder must just work
        assert sorted(df["point_id"]) == sorted(point_ids(spec, kind))  # one to one
        assert set(COMMON + extra) <= set(df.columns)
        meta = pq.read_metadata(next(iter(files.values()))).metadata
        assert meta[b"reconent_schema_version"] == str(SCHEMA_VERSION).encode()
        assert (df["schema_version"] == SCHEMA_VERSION).all() and (df["sweep"] == "tiny").all()
        assert df["node"].notna().all() and df["node_id"].notna().all() and df["torch_version"].notna().all()
        assert df["spec_hash"].nunique() == 1 and (df["seconds"] > 0).all()
        assert (df["code_version"] == versions()["code_version"]).all()  # the driver's git sha (or version)
        bad = df[df["sigma_w2"] == 1e60]
        assert (bad["status"] == "diverged").all() and bad["error"].str.len().gt(0).all()
        assert (df[df["sigma_w2"] == 2.0]["status"] == "ok").all()
    probe = pd.read_parquet(folder / "probe")
    ok = probe[probe["status"] == "ok"]
    assert (ok["decoder_loss"].map(len) == ok["depth"]).all() and (ok["cutoff"] <= ok["depth"]).all()
    train = pd.read_parquet(folder / "train")
    ok = train[train["status"] == "ok"]
    assert (ok["reached"] & (ok["epochs_run"] < 6)).all()  # stopped early at the threshold
    assert (ok["accuracy"].map(len) == ok["epochs_run"]).all() and (ok["final_accuracy"] > 0.3).all()
    assert (folder / "specs" / "spec.yaml").is_file()


@pytest.mark.slow
def test_rerun_skips_done_and_recomputes_a_corrupt_part(tiny, capsys, monkeypatch):
    from reconent.sweep.run import run

    spec, folder, _, _ = tiny
    before = snapshot(folder / "probe")
    with monkeypatch.context() as m:  # nothing missing: Ray must not even start
        m.setattr("reconent.sweep.run.RaySession",
                  lambda *a, **k: pytest.fail("Ray started although every point was done"))
        s = run(spec, progress=False)
    assert s["ran"] == 0 and s["skipped"] == 8
    assert snapshot(folder / "probe") == before

    victim = sorted(before)[0]
    path = folder / "probe" / victim
    path.write_bytes(path.read_bytes()[: len(before[victim][1]) // 2])  # truncated mid-file
    with pytest.warns(UserWarning, match="corrupt part"):
        s = run(spec, progress=False)
    assert s["ran"] == 1 and s["skipped"] == 7 and s["lost"] == 0
    after = snapshot(folder / "probe")
    assert set(after) == set(before) and pq.read_table(path).num_rows == 1
    assert {n: v for n, v in after.items() if n != victim} == {n: v for n, v in before.items() if n != victim}
    assert any((folder / "quarantine").rglob("*"))  # the corrupt copy is moved aside, not deleted

    # status, through the CLI, by URI and by name + storage
    assert main(["sweep", "status", str(folder), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert (st["points"], st["done"], st["failed"], st["left"]) == (8, 4, 4, 0)
    assert main(["sweep", "status", "tiny", "--storage", str(folder.parent)]) == 0
    assert "4 done, 4 failed" in capsys.readouterr().out


@pytest.mark.slow
def test_kill_driver_then_rerun(tmp_path, procs):
    """SIGKILL `reconent sweep run` (its whole process group) mid-sweep; the rerun finishes the rest."""
    spec = write_spec(tmp_path / "k.yaml", "k", tmp_path / "store",
                      {"sigma_w2": [1.0, 1.5, 2.0, 2.5], "sigma_b2": [0.05], "depth": [3], "seed": [0, 1]},
                      probe=SLOWER)
    folder = tmp_path / "store" / "k" / "probe"
    driver = procs.start([sys.executable, "-m", "reconent.cli", "sweep", "run", str(spec), "--json"], "driver.log")
    wait_for(lambda: len(parts(folder)) >= 2 or driver.poll() is not None, 240, "two parts")
    assert driver.poll() is None, f"the sweep ended before it could be killed:\n{procs.log('driver.log')}"
    kill_group(driver)  # with Ray's processes (same session): nothing may still write a part
    before = snapshot(folder)
    assert 2 <= len(before) < 8
    assert not list(folder.glob("part-*.parquet.*")), "a temporary file under a final name"

    code, out = procs.run([sys.executable, "-m", "reconent.cli", "sweep", "run", str(spec), "--json"], "rerun.log")
    assert code == 0, out
    s = json.loads(out.strip().splitlines()[-1])
    assert s["skipped"] == len(before) and s["ran"] == 8 - len(before) and s["ok"] == s["ran"]
    after = snapshot(folder)
    assert {n: after[n] for n in before} == before  # parts finished before the kill are untouched
    df = pd.read_parquet(folder)
    assert len(df) == 8 and sorted(df["point_id"]) == sorted(point_ids(spec, "probe"))


# ---------------------------------------------------------------- a real multi-node cluster
@pytest.mark.slow
def test_loopback_cluster_survives_a_dead_worker(tmp_path, procs):
    cluster = LoopbackCluster(procs)
    worker = cluster.add_worker()
    spec = write_spec(tmp_path / "c.yaml", "c", tmp_path / "store",
                      {"sigma_w2": [1.0, 1.5, 2.0, 2.5, 3.0], "sigma_b2": [0.05], "depth": [3], "seed": [0, 1]},
                      probe=SLOWER, max_failures=3)
    folder = tmp_path / "store" / "c" / "probe"
    driver = procs.start([sys.executable, "-m", "reconent.cli", "sweep", "run", str(spec), "--address",
                          cluster.address, "--json"], "driver.log")

    def two_nodes():
        fs = parts(folder)
        return len(fs) >= 2 and pd.read_parquet(list(fs.values()))["node_id"].nunique() == 2

    wait_for(lambda: two_nodes() or driver.poll() is not None, 240, "parts from both nodes", every=0.2)
    assert driver.poll() is None, procs.log("driver.log")
    time.sleep(0.3)  # the worker's reused actor has started its next point by now
    killed_at = pd.Timestamp.now(tz="UTC")
    kill_group(worker)
    driver.wait(timeout=300)
    assert driver.returncode == 0, procs.log("driver.log")
    s = json.loads(procs.log("driver.log").strip().splitlines()[-1])
    assert s["points"] == s["ran"] == s["ok"] == 10 and s["lost"] == 0
    assert s["retries"] >= 1  # the trial that died with the worker was retried by FailureConfig
    df = pd.read_parquet(folder)
    assert len(df) == 10 and sorted(df["point_id"]) == sorted(point_ids(spec, "probe"))  # each exactly once
    assert df["node_id"].nunique() == 2  # trials ran on both nodes
    late = df[df["started_at"] > killed_at]
    assert len(late) >= 1 and late["node_id"].nunique() == 1  # after the kill, only the head is left


@pytest.mark.slow
@pytest.mark.skipif(not all(find_spec(m) for m in ("aiohttp", "aiohttp_cors", "opencensus", "prometheus_client")),
                    reason="the Ray Jobs server needs ray[default] (aiohttp, opencensus, ...), not installed here")
def test_submit_to_loopback_jobs_server(procs):
    from ray.job_submission import JobStatus, JobSubmissionClient

    from reconent.sweep.submit import submit

    cluster = LoopbackCluster(procs, cpus=2, dashboard=True)
    wait_for(lambda: _reachable(cluster.dashboard), 60, "the Jobs API")
    store = Path(procs.tmp) / "store"
    spec = write_spec(Path(procs.tmp) / "sub.yaml", "sub", store,
                      {"sigma_w2": [1.0, 2.0], "sigma_b2": [0.05], "depth": [2], "seed": [0]})
    job = submit(spec, cluster.dashboard, storage=str(store))
    client = JobSubmissionClient(cluster.dashboard)
    end = time.monotonic() + 240
    while (st := client.get_job_status(job)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.monotonic() < end, f"job {job} still {st} after 240 s"
        time.sleep(1)
    assert st == JobStatus.SUCCEEDED, client.get_job_logs(job)
    assert len(parts(store / "sub" / "probe")) == 2


def _reachable(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_bench_sweep_reports_overhead(capsys):
    assert main(["bench", "sweep", "--n", "4", "--json"]) == 0
    o = json.loads(capsys.readouterr().out)
    for k in ("trivial", "probe"):
        assert 0 < o[k]["first_result_seconds"] <= o[k]["wall_seconds"]
    assert o["probe"]["compute_seconds"] > 0 and o["probe"]["parts"] == 4
    assert 0 < o["trivial"]["steady_overhead_per_point"] < o["trivial"]["wall_seconds"]


@pytest.mark.slow
def test_bench_sweep_accounts_a_known_compute():
    """Points that sleep 0.5 s each: the bench must see 4 × 0.5 s of compute, and the wall can be no
    shorter than that spread over 2 slots, so the overhead it derives is >= 0."""
    from reconent.bench import bench_sweep

    o = bench_sweep(n=4, num_cpus=2, sleep=0.5)["sleep"]
    assert o["compute_seconds"] == pytest.approx(2.0, rel=0.1)
    assert o["wall_seconds"] >= 1.0 and 0 <= o["overhead_per_point"] < 5


# ---------------------------------------------------------------- the boundary search in status
@pytest.mark.slow
def test_search_without_probes_needs_no_grid_depth_and_status_counts_its_trainings(tmp_path, capsys):
    """A boundary search without probes takes its depths from train.points.boundary.depth alone (a grid
    without `depth`), and `sweep status` counts the trainings the search stored, as `sweep run` does."""
    spec = {"name": "bs", "dataset": "mnist5k", "arch": "mlp", "storage": str(tmp_path / "store"), "device": "cpu",
            "resources": {"cpu": 1, "gpu": 0}, "grid": {"sigma_w2": [0.3, 1.76], "width": [16]},
            "probe": {"enabled": False},
            "train": {"points": {"boundary": {"budget": 3, "depth": {"min": 1, "max": 6}}}, "epochs": 1,
                      "threshold": 0.3, "lr": 0.05, "batch_size": 32, "train_samples": 256}}
    (tmp_path / "bs.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main(["sweep", "run", str(tmp_path / "bs.yaml"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    n = s["search"]["trainings"]
    assert 2 <= n <= 3 and s["points"] == n and s["ok"] + s["diverged"] + s["error"] == n
    assert main(["sweep", "status", str(tmp_path / "store" / "bs"), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert (st["points"], st["done"] + st["failed"], st["left"]) == (n, n, 0), st
    assert st["search"] == {"strategy": "boundary", "budget": 3, "trainings": n, "left_at_most": 3 - n}
    assert len(list((tmp_path / "store" / "bs" / "train").glob("part-*.parquet"))) == n
