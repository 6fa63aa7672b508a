"""`reconent sweep submit` against a loopback Ray head with token authentication, as the cluster templates
configure it (cluster/README.md): without the token one line and exit 2; with it, `--follow` streams the
job and exits with its status; a cluster whose `python` cannot import reconent's dependencies says so in
the job's first line of output."""
from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import LoopbackCluster, wait_for

TOKEN = "0123456789abcdef" * 2
SUBMIT = [sys.executable, "-m", "reconent.cli", "sweep", "submit"]


def answers(cluster: LoopbackCluster) -> bool:
    """The Jobs API answers (401 counts: it is up) and the head's agent, which runs jobs, listens."""
    try:
        urllib.request.urlopen(f"{cluster.dashboard}/api/version", timeout=2).close()
    except urllib.error.HTTPError:
        pass
    except OSError:
        return False
    try:
        socket.create_connection(("127.0.0.1", cluster.agent_port), timeout=2).close()
    except OSError:
        return False
    return True


def token_head(procs, **env) -> LoopbackCluster:
    cluster = LoopbackCluster(procs, cpus=2, dashboard=True, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN, **env)
    wait_for(lambda: answers(cluster), 90, "the Jobs API and the head's agent", every=1)
    return cluster


def tiny_spec(folder: Path) -> Path:
    spec = {"name": "sub", "dataset": "mnist5k", "arch": "mlp", "storage": str(folder / "store"), "device": "cpu",
            "resources": {"cpu": 1, "gpu": 0}, "grid": {"sigma_w2": [1.0, 2.0], "sigma_b2": [0.05], "depth": [2]},
            "probe": {"epochs": 1, "batch_size": 64, "lr": 1e-3, "rtol": 0.005, "train_samples": 4,
                      "eval_samples": 2},
            "train": {"points": "none"}, "max_failures": 1}
    (folder / "sub.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder / "sub.yaml"


@pytest.mark.slow
def test_token_cluster_refuses_in_one_line_without_the_token_and_follow_streams_the_job(procs):
    cluster = token_head(procs)
    spec = tiny_spec(Path(procs.tmp))
    code, out = procs.run([*SUBMIT, str(spec), "--address", cluster.dashboard], "no-token.log", timeout=120)
    errors = [ln for ln in out.splitlines() if ln.startswith("reconent: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in out, out[-3000:]
    assert all(s in errors[0] for s in ("RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN", "cluster/README.md")), errors
    assert not (Path(procs.tmp) / "store").exists()

    code, out = procs.run([*SUBMIT, str(spec), "--address", cluster.dashboard, "--follow"], "follow.log",
                          timeout=400, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN)
    assert code == 0, out[-5000:]
    assert "sweep sub: 2 points, 0 already done, ran 2: 2 ok" in out  # the job's own output, streamed
    assert out.rstrip().endswith("SUCCEEDED"), out[-2000:]
    assert len(list((Path(procs.tmp) / "store" / "sub" / "probe").glob("part-*.parquet"))) == 2


@pytest.mark.slow
def test_cluster_python_without_the_dependencies_fails_the_job_in_its_first_line(procs, tmp_path):
    """A head started with another `python` first on its PATH (here a bare virtualenv: the head's venv was
    not activated): the job fails at once, its first line names the python and what it lacks."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    cluster = token_head(procs, PATH=f"{tmp_path / 'bare' / 'bin'}:{procs.env['PATH']}")
    code, out = procs.run([*SUBMIT, str(tiny_spec(Path(procs.tmp))), "--address", cluster.dashboard, "--follow"],
                          "bare.log", timeout=300, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN)
    assert code == 1, out[-3000:]
    ours = [ln for ln in out.splitlines() if ln.startswith("reconent:")]
    assert ours[0].startswith(f"reconent: error: the cluster's python ({tmp_path / 'bare' / 'bin' / 'python'}")
    assert "cannot import torch" in ours[0] and "cluster/README.md" in ours[0]
    assert "ModuleNotFoundError" not in out and "FAILED" in out.splitlines()[-1]
