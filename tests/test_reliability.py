"""Reliability (issue 10): inputs checked before compute, failures split by kind, one driver per
sweep (the lease), compaction, the point id without analysis-only settings (and the v1 migration),
a private Ray on loopback. The same against a real S3 API: tests/test_s3.py."""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from reconent.cli import main
from reconent.sweep import columns, results
from reconent.sweep.lease import Lease, LeaseHeld
from reconent.sweep.spec import load_spec
from reconent.sweep.store import Store
from reconent.sweep.trial import empty_row, environmental, run_point

TINY = {"epochs": 1, "batch_size": 64, "lr": 1e-3, "rtol": 0.005, "train_samples": 4, "eval_samples": 2}
ROOT = Path(__file__).resolve().parents[1]


def write_spec(path: Path, storage, grid: dict, name: str = "rel", **top) -> Path:
    spec = {"name": name, "dataset": "mnist5k", "arch": "mlp", "storage": str(storage), "device": "cpu",
            "resources": {"cpu": 1, "gpu": 0}, "grid": grid, "probe": dict(TINY), "train": {"points": "none"},
            "max_failures": 1, **top}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def fill_mnist(root: Path) -> None:
    """A torchvision-format MNIST of 6 + 3 images (the file format torchvision reads)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem, n in (("train", 6), ("t10k", 3)):
        img = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        (raw / f"{stem}-images-idx3-ubyte").write_bytes(struct.pack(">BBBBIII", 0, 0, 8, 3, n, 28, 28) + img.tobytes())
        lab = rng.integers(0, 10, size=n).astype(np.uint8)
        (raw / f"{stem}-labels-idx1-ubyte").write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, n) + lab.tobytes())


def files(folder: Path, prefix: str = "") -> list[str]:
    return sorted(p.name for p in folder.glob(f"{prefix}*.parquet")) if folder.is_dir() else []


def fake_rows(spec_path, status="ok", finished=None) -> list[dict]:
    """Rows as a trial makes them (trial.empty_row), with plausible results, for every probe point."""
    s = load_spec(spec_path, check_storage=False)
    out = []
    for p in s.points():
        r = empty_row(p, spec_hash=s.spec_hash)
        t = finished or datetime.now(timezone.utc)
        r.update(status=status, seconds=0.1, device="cpu", started_at=t, finished_at=t)
        if status == "ok":
            r.update({c: list(np.linspace(1, 0, p["depth"])) for c in columns.PROFILES})
            r.update(cutoff=1, steps_run=63, train_seconds=0.1, path="stacked")
        else:
            r["error"] = "ValueError: an impossible setting"
        out.append(r)
    return out


# ---------------------------------------------------------------- 1. inputs checked before compute
@pytest.mark.slow
def test_missing_dataset_exits_2_writes_nothing_then_computes_once_the_files_are_there(tmp_path, capsys):
    data, store = tmp_path / "data", tmp_path / "store"
    data.mkdir()
    spec = write_spec(tmp_path / "s.yaml", store, {"sigma_w2": [1.0, 2.0], "depth": [2], "sigma_b2": [0.05]},
                      dataset="mnist", data_root=str(data))
    assert main(["sweep", "run", str(spec), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("reconent: error: data_root: dataset 'mnist' not found")
    assert str(data) in err and "download" in err  # names the root and the fix
    assert not store.exists()  # nothing written: no spec, no part
    fill_mnist(data)  # the files are copied in
    assert main(["sweep", "run", str(spec), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (s["skipped"], s["ran"], s["ok"]) == (0, 2, 2)


# ---------------------------------------------------------------- 2. failures split by kind
def test_environmental_failures_are_told_from_the_sciences():
    import torch

    env = [MemoryError(), OSError("disk"), FileNotFoundError("x"), ConnectionError("reset"), TimeoutError(),
           torch.cuda.OutOfMemoryError("CUDA out of memory"), RuntimeError("CUDA error: an illegal memory access"),
           RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR")]
    science = [ValueError("activation must be tanh or relu"), RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
               ZeroDivisionError(), FloatingPointError("nan")]
    assert all(environmental(e) for e in env) and not any(environmental(e) for e in science)


def test_run_point_raises_a_missing_dataset_and_keeps_science_errors_as_rows(tmp_path):
    from reconent.science.data import DatasetNotFound

    p = load_spec(write_spec(tmp_path / "s.yaml", tmp_path, {"sigma_w2": [1.0], "depth": [2]}, dataset="mnist",
                             data_root=str(tmp_path)), check_storage=False).points()[0]
    with pytest.raises(DatasetNotFound):  # environmental: the trial must fail (and be retried), not store a row
        run_point(p, "cpu", data_root=str(tmp_path / "empty"))
    bad = run_point({**p, "dataset": "mnist5k", "activation": "swish"}, "cpu")  # the science rejects it: a row
    assert bad["status"] == "error" and "swish" in bad["error"]


@pytest.mark.slow
def test_dataset_missing_on_the_workers_leaves_no_part_and_the_next_run_computes_it(tmp_path):
    """A cluster whose workers lack the data: `run` without the driver's dataset check
    (`check_data=False`, a driver that does not hold the data) is exactly what the trials then see."""
    from reconent.sweep.run import run
    from reconent.sweep.status import status

    data, store = tmp_path / "data", tmp_path / "store"
    data.mkdir()
    spec = write_spec(tmp_path / "s.yaml", store, {"sigma_w2": [1.0], "depth": [2]}, dataset="mnist",
                      data_root=str(data))
    s = run(load_spec(spec), progress=False, check_data=False)
    assert (s["ran"], s["lost"], s["error"]) == (1, 1, 0) and s["retries"] >= 1  # retried, then given up
    assert files(store / "rel" / "probe") == []  # nothing that counts as done
    st = status(str(store / "rel"))
    assert (st["left"], st["error"], st["environment"]) == (1, 0, 1)
    assert st["environment_errors"] == {"DatasetNotFound": 1}
    fill_mnist(data)
    s = run(spec, progress=False)
    assert (s["skipped"], s["ran"], s["ok"]) == (0, 1, 1)
    assert status(str(store / "rel"))["environment"] == 0


def read_only(folder: Path, on: bool) -> None:
    """Make `folder` refuse new files, for root too (the immutable attribute), or accept them again."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i" if on else "-i", str(folder)], check=True, capture_output=True)
    else:
        folder.chmod(0o555 if on else 0o755)


@pytest.mark.slow
def test_storage_that_turns_read_only_loses_nothing(tmp_path, capsys):
    """The kind's folder turns read-only: every trial fails, is retried and leaves no part (nothing that
    counts as done); once it is writable again, a rerun computes the points."""
    spec = write_spec(tmp_path / "s.yaml", tmp_path / "store", {"sigma_w2": [1.0], "depth": [2]})
    folder = tmp_path / "store" / "rel" / "probe"
    folder.mkdir(parents=True)
    try:
        read_only(folder, True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("cannot make a folder read-only here")
    try:
        (folder / "probe-write").touch()
        read_only(folder, False)
        pytest.skip("this filesystem ignores the read-only attribute")
    except PermissionError:
        pass
    try:
        with pytest.raises(SystemExit) as exit_:  # lost points: exit 1, rerun to finish
            main(["sweep", "run", str(spec), "--json"])
        assert exit_.value.code == 1
        s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert (s["lost"], s["ok"], s["error"]) == (1, 0, 0)
        assert files(folder) == []
    finally:
        read_only(folder, False)
    assert main(["sweep", "run", str(spec), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (s["skipped"], s["ran"], s["ok"]) == (0, 1, 1) and len(files(folder, "part-")) == 1


@pytest.mark.slow
def test_retry_errors_recomputes_stored_error_rows(tmp_path):
    from reconent.sweep.run import run

    spec = write_spec(tmp_path / "s.yaml", tmp_path / "store", {"sigma_w2": [1.0, 2.0], "depth": [2]})
    st = Store(str(tmp_path / "store"), "rel")
    ok, bad = fake_rows(spec, "ok")[0], fake_rows(spec, "error")[1]
    st.write_part("probe", ok)
    st.write_part("probe", bad)
    st.compact("probe")  # an error row inside a compacted file is retried too
    s = run(spec, progress=False)
    assert (s["skipped"], s["ran"]) == (2, 0)  # without the flag an error row counts as done
    s = run(spec, progress=False, retry_errors=True)
    assert (s["skipped"], s["ran"], s["ok"]) == (1, 1, 1)
    df = results.load(str(tmp_path / "store" / "rel"))
    assert len(df) == 2 and set(df["status"]) == {"ok"} and df["point_id"].is_unique
    assert Store(str(tmp_path / "store"), "rel").done("probe") == {ok["point_id"]: "ok", bad["point_id"]: "ok"}


# ---------------------------------------------------------------- 3. one driver per sweep
def test_second_driver_refuses_while_the_lease_is_held(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.yaml", tmp_path / "store", {"sigma_w2": [1.0], "depth": [2]})
    st = Store(str(tmp_path / "store"), "rel")
    with Lease(st, heartbeat=0.05, settle=0):
        assert main(["sweep", "run", str(spec)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("reconent: error: lease: sweep 'rel'")
        assert f"on {socket.gethostname()} (pid {os.getpid()}" in err
        assert files(tmp_path / "store" / "rel" / "probe") == [] and not (tmp_path / "store" / "rel" / "specs").exists()
        assert main(["compact", str(tmp_path / "store" / "rel")]) == 2  # compaction takes the same lease
        first = json.loads((tmp_path / "store" / "rel" / "_lease.json").read_text())["heartbeat"]
        # the heartbeat thread keeps rewriting it
        deadline = time.monotonic() + 30
        while json.loads((tmp_path / "store" / "rel" / "_lease.json").read_text())["heartbeat"] == first:
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.05)
    assert not (tmp_path / "store" / "rel" / "_lease.json").exists()  # released


def test_stale_or_dead_lease_is_taken_over_with_a_warning(tmp_path):
    st = Store(str(tmp_path), "rel")
    lease = tmp_path / "rel" / "_lease.json"
    lease.parent.mkdir(parents=True)
    # another host, silent for 10 minutes
    lease.write_text(json.dumps({"host": "node-7", "pid": 1, "token": "x", "heartbeat": time.time() - 600}))
    with pytest.warns(UserWarning, match="taking over the lease .* node-7 .*no heartbeat for 600 s"):
        with Lease(st, stale_after=60, settle=0) as mine:
            assert json.loads(lease.read_text())["token"] == mine.token
    # this host, a fresh heartbeat, but its process is gone (a SIGKILLed driver)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lease.write_text(json.dumps({"host": socket.gethostname(), "pid": gone.pid, "token": "y",
                                 "heartbeat": time.time()}))
    with pytest.warns(UserWarning, match="its process is gone"):
        with Lease(st, settle=0):
            pass
    # a live holder elsewhere with a fresh heartbeat: refused
    lease.write_text(json.dumps({"host": "node-7", "pid": 1, "token": "z", "heartbeat": time.time()}))
    with pytest.raises(LeaseHeld, match="node-7 \\(pid 1"):
        Lease(st, settle=0).acquire()


# ---------------------------------------------------------------- 4. compaction
def _store_with_parts(tmp_path, n_sigma=10, depths=(2, 3, 4)):
    spec = write_spec(tmp_path / "s.yaml", tmp_path / "store",
                      {"sigma_w2": [round(float(x), 3) for x in np.linspace(0.5, 3, n_sigma)], "depth": list(depths)})
    st = Store(str(tmp_path / "store"), "rel")
    rows = fake_rows(spec)
    for r in rows:
        st.write_part("probe", r)
    st.save_spec(load_spec(spec, check_storage=False).resolved())
    return spec, st, rows


def test_compaction_merges_parts_and_every_reader_sees_each_point_once(tmp_path, capsys):
    spec, st, rows = _store_with_parts(tmp_path)
    folder = tmp_path / "store" / "rel" / "probe"
    before = results.load(str(folder.parent)).drop(columns=[]).sort_values("point_id", ignore_index=True)
    assert len(files(folder, "part-")) == 30
    assert main(["compact", str(folder.parent), "--rows-per-file", "12", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kinds"][0]["files_before"] == 30 and out["kinds"][0]["files_after"] == 3
    assert files(folder, "part-") == [] and len(files(folder, "compact-")) == 3
    after = results.load(str(folder.parent))
    pd.testing.assert_frame_equal(before, after.sort_values("point_id", ignore_index=True))
    plain = pd.read_parquet(folder)
    assert len(plain) == 30 and plain["point_id"].is_unique
    from reconent.sweep.status import status

    assert status(str(folder.parent))["ok"] == 30
    assert Store(str(tmp_path / "store"), "rel").done_ids("probe") == {r["point_id"] for r in rows}
    # new parts later (a grown grid) join the small compacted files at the next compaction
    extra = fake_rows(write_spec(tmp_path / "t.yaml", tmp_path / "store", {"sigma_w2": [9.0], "depth": [2]}))[0]
    st.write_part("probe", extra)
    assert st.compact("probe", 12)["points"] == 31
    assert len(pd.read_parquet(folder)) == 31 and pd.read_parquet(folder)["point_id"].is_unique


KILL_AFTER = {
    # the first compacted file is written (in the staging folder); nothing switched yet
    "write": ("put = store.Store._put\n"
              "def killing(self, folder, name, data):\n"
              "    out = put(self, folder, name, data)\n"
              "    if name.startswith('compact-'):\n"
              "        os.kill(os.getpid(), signal.SIGKILL)\n"
              "    return out\n"
              "store.Store._put = killing\n"),
    # the folders are switched; the old one (the parts) is not removed yet
    "switch": ("swap = store.compaction._exchange\n"
               "def killing(a, b):\n"
               "    assert swap(a, b)\n"
               "    os.kill(os.getpid(), signal.SIGKILL)\n"
               "store.compaction._exchange = killing\n"),
}


@pytest.mark.parametrize("moment", sorted(KILL_AFTER))
def test_sigkill_during_compaction_loses_and_duplicates_nothing(tmp_path, procs, moment):
    spec, st, rows = _store_with_parts(tmp_path)
    folder = tmp_path / "store" / "rel" / "probe"
    ids = {r["point_id"] for r in rows}
    script = ("import os, signal, sys\n"
              "from reconent.sweep import store, compact\n"
              + KILL_AFTER[moment] +
              "compact.compact(sys.argv[1], rows_per_file=12)\n")
    code, out = procs.run([sys.executable, "-c", script, str(folder.parent)], "compact.log", timeout=120)
    assert code == -9, out
    staging = list(folder.parent.glob("_probe.next-*"))
    assert len(staging) == 1  # what the crash left, invisible to readers
    if moment == "write":
        assert files(folder, "compact-") == [] and len(files(folder, "part-")) == 30
    else:
        assert len(files(folder, "compact-")) == 3 and files(folder, "part-") == []
    # every reader sees each point once, even now
    plain = pd.read_parquet(folder)
    assert len(plain) == 30 and set(plain["point_id"]) == ids
    df = results.load(str(folder.parent))
    assert len(df) == 30 and set(df["point_id"]) == ids
    assert Store(str(tmp_path / "store"), "rel").done_ids("probe") == ids
    # run it again: the dead driver's lease is taken over, and the compaction finishes and cleans up
    with pytest.warns(UserWarning, match="process is gone"):
        assert main(["compact", str(folder.parent), "--rows-per-file", "12"]) == 0
    assert files(folder, "part-") == [] and len(files(folder, "compact-")) == 3
    assert list(folder.parent.glob("_probe.next-*")) == []
    plain = pd.read_parquet(folder)
    assert len(plain) == 30 and set(plain["point_id"]) == ids


# ---------------------------------------------------------------- 5. point identity and the v1 migration
def v1_point_id(point: dict) -> str:
    """The schema-1 formula, written out here on purpose: sha256 of the sorted-keys JSON of the point
    without `sweep` (rtol included), first 16 hex."""
    import hashlib

    body = {k: v for k, v in point.items() if k != "sweep"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


# What schema 3 added to a probe row: the budget `steps` and `checkpoints` settings, and results
# (schema 1 and 2 had a result `steps`, the steps taken, which schema 3 calls `steps_run`).
V3_PROBE = ("steps", "checkpoints", "steps_run", "checkpoint_steps", "checkpoint_norm_median")


def write_old_part(folder: Path, row: dict, point: dict, version: int) -> Path:
    """A probe part as schema-1 or schema-2 code wrote it: the columns of that schema only (the result `steps`
    holding the steps taken), schema_version in the row and the footer, named by that schema's point id
    (v1: every setting hashed; v2: also without the settings it left at their neutral value)."""
    later = set(V3_PROBE) | (set(columns.NEUTRAL["probe"]) if version == 1 else set())
    point = {k: v for k, v in point.items() if k not in later}
    pid = v1_point_id(point) if version == 1 else columns.point_id(point)
    row = {**{k: v for k, v in row.items() if k not in later}, "point_id": pid, "schema_version": version,
           "steps": row["steps_run"]}
    fields = [f for f in columns.SCHEMAS["probe"] if f.name not in later]
    fields.insert([f.name for f in fields].index("train_seconds"), pa.field("steps", pa.int64()))
    schema = pa.schema(fields, metadata={columns.META_KEY: str(version).encode(), b"reconent_kind": b"probe"})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{row['point_id']}.parquet"
    pq.write_table(pa.Table.from_pylist([row], schema=schema), path)
    return path


def write_v1_part(folder: Path, row: dict, point: dict) -> Path:
    return write_old_part(folder, row, point, 1)


def test_rtol_is_not_part_of_the_point_id(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", tmp_path, {"sigma_w2": [1.0], "depth": [2]})
    p = load_spec(spec, check_storage=False).points()[0]
    assert columns.point_id(p) == columns.point_id({**p, "rtol": 0.2})  # an analysis rule
    assert columns.point_id(p) != columns.point_id({**p, "eval_samples": 3})  # a measurement setting
    # pinned, computed once by the released code: a changed formula cannot pass by changing both sides
    assert columns.point_id(p) == "2422bb0f918a5de6"
    assert columns.point_id_v1(p) == v1_point_id(p) == "ecacfb0261311960"


@pytest.mark.slow
def test_v1_sweep_keeps_its_results_and_a_rerun_with_another_rtol_computes_nothing(tmp_path):
    from reconent.sweep.run import run

    spec = write_spec(tmp_path / "s.yaml", tmp_path / "store", {"sigma_w2": [1.0, 2.0], "depth": [2, 3]})
    pts = load_spec(spec).points()
    folder = tmp_path / "store" / "rel" / "probe"
    for p, r in zip(pts, fake_rows(spec)):
        write_v1_part(folder, r, p)
    v2 = {columns.point_id(p) for p in pts}
    # read-only readers already name them by their v2 ids, before any run migrated them
    assert set(results.load(str(folder.parent))["point_id"]) == v2
    # a changed rtol is an analysis rule: the rerun computes nothing, and migrates the parts
    raw = yaml.safe_load(spec.read_text())
    raw["probe"]["rtol"] = 0.05
    spec.write_text(yaml.safe_dump(raw))
    s = run(spec, progress=False)
    assert (s["points"], s["skipped"], s["ran"]) == (4, 4, 0)
    assert files(folder) == sorted(f"part-{i}.parquet" for i in v2)
    df = results.load(str(folder.parent))
    assert set(df["point_id"]) == v2 and set(df["schema_version"]) == {columns.SCHEMA_VERSION}
    assert set(df["rtol"]) == {0.005}  # the rule its stored cutoff was computed with
    assert set(df["steps_run"]) == {63} and df["steps"].isna().all()  # v1's result `steps`, read as what it is


@pytest.mark.slow
def test_v2_sweep_at_one_epoch_is_neither_recomputed_nor_reinterpreted(tmp_path):
    """Schema 2 stored the steps taken as `steps` and knew only `epochs`: a rerun of its spec (`epochs: 1`)
    computes nothing, and its rows say 63 steps run at an `epochs` budget, not a budget of 63 steps."""
    from reconent.sweep.run import run

    spec = write_spec(tmp_path / "s.yaml", tmp_path / "store", {"sigma_w2": [1.0, 2.0], "depth": [2, 3]})
    pts = load_spec(spec).points()
    assert {p["epochs"] for p in pts} == {1} and {p["steps"] for p in pts} == {None}
    folder = tmp_path / "store" / "rel" / "probe"
    for p, r in zip(pts, fake_rows(spec)):
        write_old_part(folder, r, p, 2)
    ids = {columns.point_id(p) for p in pts}
    assert set(files(folder)) == {f"part-{i}.parquet" for i in ids}  # v3 kept the v2 ids of `epochs` points
    before = results.load(str(folder.parent))  # read-only, before any run migrated them
    assert set(before["steps_run"]) == {63} and before["steps"].isna().all() and set(before["epochs"]) == {1}
    s = run(spec, progress=False)
    assert (s["points"], s["skipped"], s["ran"]) == (4, 4, 0)
    plain = pd.read_parquet(folder)  # migrated in place: even plain pandas reads the v3 meaning now
    assert set(plain["schema_version"]) == {columns.SCHEMA_VERSION} and set(plain["steps_run"]) == {63}
    assert plain["steps"].isna().all() and set(plain["point_id"]) == ids
    # The same spec without a budget asks for the default 938 steps: new points beside the old ones
    raw = yaml.safe_load(spec.read_text())
    del raw["probe"]["epochs"]
    spec.write_text(yaml.safe_dump(raw))
    new = load_spec(spec).points()
    assert {p["steps"] for p in new} == {938} and not ids & {columns.point_id(p) for p in new}


# ---------------------------------------------------------------- 6. private Ray on loopback
def _listening(sid: int) -> list[tuple[str, int]]:
    """(address, port) of the TCP sockets listening in session `sid` (Linux /proc)."""
    socks = {}
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A":  # LISTEN
                ip, port = f[1].split(":")
                raw = bytes.fromhex(ip)
                addr = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))) \
                    if v6 else socket.inet_ntoa(raw[::-1])
                socks[f[9]] = (addr, int(port, 16))
    out = set()
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getsid(int(d)) != sid:
                continue
            for fd in os.listdir(f"/proc/{d}/fd"):
                link = os.readlink(f"/proc/{d}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in socks:
                    out.add(socks[link[8:-1]])
        except OSError:
            continue
    return sorted(out)


@pytest.mark.slow
def test_private_local_ray_listens_on_loopback_only(procs):
    """`sweep run`'s private Ray: every socket of its processes listens on loopback."""
    script = ("import json, os, sys\n"
              "sys.path.insert(0, 'tests')\n"
              "from test_reliability import _listening\n"
              "from reconent.sweep.ray_session import RaySession\n"
              "import ray\n"
              "with RaySession(None, num_cpus=1):\n"
              "    ray.get(ray.remote(lambda: 1).remote())  # a worker is up too\n"
              "    print(json.dumps([ray.nodes()[0]['NodeManagerAddress'], _listening(os.getsid(0))]))\n")
    code, out = procs.run([sys.executable, "-c", script], "loopback.log", timeout=120)
    assert code == 0, out
    node, listening = json.loads(out.strip().splitlines()[-1])
    assert node == "127.0.0.1"
    assert listening and all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for ip, _ in listening), listening


# ---------------------------------------------------------------- 6. Ray's memory monitor
# A threshold of 5% of the machine's memory: the monitor kills every trial worker it sees (it looks every
# 250 ms). Looking every 4 s instead, most workers start before it looks, so kills land in running tasks.
MEMORY_KILLS = {"RAY_memory_usage_threshold": "0.05"}
IN_RUNNING_TASKS = {**MEMORY_KILLS, "RAY_memory_monitor_refresh_ms": "4000"}


@pytest.mark.slow
def test_tune_survives_a_worker_killed_by_the_memory_monitor_while_its_task_runs(procs):
    """Ray reports such a kill as OutOfMemoryError on the task; Tune's actor manager raised it out of
    tuner.fit() ('Caught unexpected exception'), ending the sweep. With survive_memory_kills it is the
    dead actor Tune retries. The unpatched run shows the Ray behaviour the patch exists for."""
    script = [sys.executable, str(ROOT / "tests" / "ray_memory_kill.py")]
    code, out = procs.run(script, "plain.log", timeout=300, **IN_RUNNING_TASKS)
    assert code != 0 and "RuntimeError: Caught unexpected exception: 1 worker(s) were killed" in out, out[-3000:]
    code, out = procs.run([*script, "patched"], "patched.log", timeout=300, **IN_RUNNING_TASKS)
    assert code == 0, out[-3000:]
    last = json.loads(out.strip().splitlines()[-1])[-1]
    assert last["task"].startswith("RayActorError: OutOfMemoryError: 1 worker(s) were killed"), last
    assert last["actor"] == last["task"]


@pytest.mark.slow
def test_memory_kills_are_retried_then_lost_and_a_rerun_computes_the_point(tmp_path, procs):
    """`sweep run` under a memory monitor that kills every trial: no traceback out of tuner.fit, each
    trial retried `max_failures` times, the point lost (exit 1), nothing stored, `status` names the
    memory kill; without the pressure the same command computes the point."""
    store = tmp_path / "store"
    spec = write_spec(tmp_path / "s.yaml", store, {"sigma_w2": [1.0], "depth": [2]}, max_failures=1)
    argv = [sys.executable, "-m", "reconent.cli", "sweep", "run", str(spec), "--json"]
    code, out = procs.run(argv, "oom.log", timeout=300, **MEMORY_KILLS)
    assert code == 1, out[-3000:]
    assert "Caught unexpected exception" not in out and "reconent: trial failed after retries: " in out
    s = json.loads(next(ln for ln in reversed(out.splitlines()) if ln.startswith('{"sweep"')))
    assert (s["ran"], s["lost"], s["ok"], s["error"], s["retries"]) == (1, 1, 0, 0, 1), s
    assert files(store / "rel" / "probe") == []
    from reconent.sweep.status import status

    st = status(str(store / "rel"))
    assert (st["left"], st["environment"], st["environment_errors"]) == (1, 1, {"OutOfMemoryError": 1}), st
    code, out = procs.run(argv, "rerun.log", timeout=300)
    assert code == 0, out[-3000:]
    assert len(files(store / "rel" / "probe", "part-")) == 1
