"""Shared fixtures: for the Ray tests, private Ray processes on loopback, ended by their PIDs; for the stop-rule
tests, a measured accuracy curve (`stalled_curve`).

Other people run Ray tests on the same machine at the same time, so nothing here may touch Ray
processes it did not start: never `ray stop`, never kill by name. Every process a test starts is
the leader of a new session; Ray's processes (raylet, GCS, workers) stay in it, which lets cleanup
find and kill by PID exactly the processes that descend from this test, even re-parented ones.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """PIDs of the live processes in session `sid` (a process we started with start_new_session=True).

    Ray's workers put themselves in their own process groups, so killing a group misses them, but
    they stay in the session: that is how we find exactly our own descendants, re-parented or not."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                with open(f"/proc/{d}/stat") as f:
                    state, _, _, session = f.read().rsplit(")", 1)[1].split()[:4]
            except OSError:  # gone meanwhile
                continue
            if int(session) == sid and state not in "ZX":  # a zombie is dead, only not yet reaped
                out.append(int(d))
    return out


def kill_session(sid: int, timeout: float = 30) -> None:
    """SIGKILL every process of session `sid`, by PID, until none is left."""
    end = time.monotonic() + timeout
    while pids := session_pids(sid):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > end:
            raise RuntimeError(f"processes {pids} of session {sid} survived SIGKILL")
        time.sleep(0.1)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a process started with start_new_session=True, and everything else in its session."""
    kill_session(proc.pid)
    proc.wait(timeout=30)


class Procs:
    """Start processes, each in its own session; `close()` ends every process of those sessions by PID."""

    def __init__(self):
        # Short: Ray puts unix sockets under it (limit ~107 characters).
        self.tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    # Notice a killed node in ~2 s instead of ~15 s.
                    "RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3",
                    "RAY_health_check_timeout_ms": "500",
                    # a killed driver cannot remove its local Ray's temp dir: keep it in ours
                    "RECONENT_RAY_TMPDIR": self.tmp}
        self.procs: list[subprocess.Popen] = []

    def start(self, argv, log: str, **env) -> subprocess.Popen:
        p = subprocess.Popen(argv, env={**self.env, **env}, start_new_session=True, cwd=ROOT,
                             stdout=open(Path(self.tmp) / log, "w"), stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def run(self, argv, log: str, timeout: float = 300, **env) -> tuple[int, str]:
        """Run to completion (then end whatever it left behind); returns (exit code, output)."""
        p = self.start(argv, log, **env)
        try:
            code = p.wait(timeout=timeout)
        finally:
            kill_group(p)
        return code, self.log(log)

    def log(self, name: str) -> str:
        return (Path(self.tmp) / name).read_text()

    def close(self) -> None:
        for p in reversed(self.procs):
            kill_group(p)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def procs():
    p = Procs()
    try:
        yield p
    finally:
        p.close()


def wait_for(pred, timeout: float, what: str, every: float = 0.1):
    end = time.monotonic() + timeout
    while not (v := pred()):
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return v


class LoopbackCluster:
    """A real multi-node Ray cluster on 127.0.0.1: a head and workers, each `ray start --block`."""

    def __init__(self, procs: Procs, cpus: int = 1, dashboard: bool = False, **env):
        self.procs, self.port, self.env = procs, free_port(), env
        self.address = f"127.0.0.1:{self.port}"
        argv = [str(BIN / "ray"), "start", "--head", "--block", f"--port={self.port}", f"--num-cpus={cpus}",
                f"--temp-dir={procs.tmp}", "--node-ip-address=127.0.0.1"]
        if dashboard:
            self.dashboard, self.agent_port = f"http://127.0.0.1:{free_port()}", free_port()
            # the agent's ports too: their defaults (52365, ...) may belong to another Ray on this machine,
            # and then the Jobs API answers "No available agent to submit job"
            argv += ["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                     f"--dashboard-port={self.dashboard.rsplit(':', 1)[1]}",
                     f"--dashboard-agent-listen-port={self.agent_port}", f"--dashboard-agent-grpc-port={free_port()}",
                     f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]
        else:
            argv += ["--include-dashboard=false"]
        self.head = procs.start(argv, "head.log", **env)
        self.workers: list[subprocess.Popen] = []
        self.wait_nodes(1)

    def add_worker(self, cpus: int = 1) -> subprocess.Popen:
        w = self.procs.start([str(BIN / "ray"), "start", f"--address={self.address}", "--block",
                              f"--num-cpus={cpus}", f"--temp-dir={self.procs.tmp}", "--node-ip-address=127.0.0.1"],
                             f"worker{len(self.workers)}.log", **self.env)
        self.workers.append(w)
        self.wait_nodes(1 + len(self.workers))
        return w

    def alive_nodes(self) -> int:
        out = subprocess.run([str(BIN / "ray"), "status", f"--address={self.address}"],
                             env={**self.procs.env, **self.env},  # the cluster's auth settings, if any
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            return 0
        active = out.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return active.count("node_")

    def wait_nodes(self, n: int, timeout: float = 90) -> None:
        for p in [self.head, *self.workers]:
            if p.poll() is not None:
                raise RuntimeError(f"ray start exited with {p.returncode}:\n{self.procs.log('head.log')[-3000:]}")
        wait_for(lambda: self.alive_nodes() >= n, timeout, f"{n} Ray nodes at {self.address}", every=1)


# ----------------------------------------------------------------------------- a real S3 API
@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto S3 server (`moto_server`, the test extra) on 127.0.0.1 for the whole session, ended by PID."""
    exe = BIN / "moto_server"
    if not exe.exists():  # a test dependency: its absence fails the S3 tests, it never skips them
        pytest.fail("moto_server not installed: pip install -e .[test]")
    yield from serve_moto(lambda port: [str(exe), "-H", "127.0.0.1", "-p", str(port)])


def serve_moto(argv):
    """Start an S3 API server (`argv(port)`: its command line), yield its URL once it accepts connections, and
    end it by PID afterwards. Shared by the session's moto_server and test_lease's one-request-at-a-time one."""
    port = free_port()
    proc = subprocess.Popen(argv(port), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up():
        if proc.poll() is not None:
            raise RuntimeError(f"the moto server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_for(up, 60, f"moto server on {url}")
        yield url
    finally:
        kill_group(proc)


@pytest.fixture
def s3(moto_endpoint, monkeypatch):
    """`s3://<fresh bucket>` on the moto server, with the environment pyarrow (and Ray workers, which
    inherit it) use to reach it."""
    import uuid

    import pyarrow.fs as pafs

    for k, v in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(k, v)
    bucket = f"rn-{uuid.uuid4().hex[:12]}"
    pafs.S3FileSystem(endpoint_override=moto_endpoint, allow_bucket_creation=True).create_dir(bucket)
    return f"s3://{bucket}"


@pytest.fixture
def stalled_curve() -> list[float]:
    """A measured accuracy curve that stalls and rises again: σ_w² 0.8, depth 5, seed 0, mnist5k, 50 epochs at 0.8
    without a stop rule (analysis/boundary_mnist5k/honest/stopcheck.yaml). It sits at 0.740-0.746 for eight epochs
    and passes at epoch 34; the stop rule's earlier version (rate over the last fifth) stopped it at epoch 22."""
    return [0.144, 0.309, 0.429, 0.541, 0.597, 0.639, 0.664, 0.68, 0.692, 0.711, 0.725, 0.723, 0.734, 0.737, 0.74,
            0.744, 0.745, 0.742, 0.743, 0.746, 0.741, 0.745, 0.751, 0.757, 0.76, 0.767, 0.77, 0.776, 0.777, 0.782,
            0.789, 0.797, 0.8, 0.804]
