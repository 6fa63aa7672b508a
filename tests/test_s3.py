"""The store, the sweep, compaction, the lease and the report against a real S3 API: a moto server
on 127.0.0.1 (tests/conftest.py `s3`), reached by pyarrow through AWS_ENDPOINT_URL like any S3."""
from __future__ import annotations

import json
import socket
import time
from datetime import datetime, timezone

import pandas as pd
import pyarrow.fs as pafs
import pytest
import yaml

from reconent.cli import main
from reconent.sweep import results
from reconent.sweep.lease import Lease, LeaseHeld
from reconent.sweep.store import Store, filesystem

TINY = {"epochs": 1, "batch_size": 64, "lr": 1e-3, "rtol": 0.005, "train_samples": 128, "eval_samples": 16}


def write_spec(path, storage: str, name="s3sweep"):
    spec = {"name": name, "dataset": "mnist5k", "arch": "mlp", "storage": storage, "device": "cpu",
            "resources": {"cpu": 1, "gpu": 0}, "max_failures": 1, "probe": TINY,
            "grid": {"sigma_w2": [1.0, 2.0], "sigma_b2": [0.05], "depth": [2, 3], "seed": [0]},
            "train": {"points": {"subset": [{"depth": 3}]}, "epochs": 2, "threshold": 0.3, "lr": 0.05, "batch_size": 32,
                      "train_samples": 128}}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def objects(uri: str) -> list[str]:
    fs, path = filesystem(uri)
    sel = pafs.FileSelector(path, allow_not_found=True, recursive=True)
    return sorted(i.path[len(path) + 1:] for i in fs.get_file_info(sel) if i.type == pafs.FileType.File)


@pytest.mark.slow
def test_sweep_on_s3_rerun_corrupt_part_compaction_lease_and_report(s3, tmp_path, capsys):
    spec = write_spec(tmp_path / "s.yaml", f"{s3}/reconent")
    sweep = f"{s3}/reconent/s3sweep"
    # a sweep
    assert main(["sweep", "run", str(spec), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (s["points"], s["ran"], s["lost"]) == (6, 6, 0)
    parts = [o for o in objects(sweep) if o.endswith(".parquet")]
    assert len(parts) == 6 and "_lease.json" not in objects(sweep)  # released
    # a rerun skips everything
    assert main(["sweep", "run", str(spec), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (s["skipped"], s["ran"]) == (6, 0)
    # a corrupt part (a truncated upload) is quarantined and recomputed
    fs, root = filesystem(sweep)
    victim = next(p for p in parts if p.startswith("probe/part-"))
    with fs.open_output_stream(f"{root}/{victim}") as f:
        f.write(b"PAR1 truncated")
    with pytest.warns(UserWarning, match="corrupt part"):
        assert main(["sweep", "run", str(spec), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (s["skipped"], s["ran"], s["ok"] + s["diverged"]) == (5, 1, 1)
    assert any(o.startswith("quarantine/probe/") for o in objects(sweep))
    # pd.read_parquet straight from s3:// (pyarrow finds the endpoint in AWS_ENDPOINT_URL)
    plain = pd.read_parquet(f"{sweep}/probe")
    assert len(plain) == 4 and plain["point_id"].is_unique
    before = results.load(sweep).sort_values("point_id", ignore_index=True)
    # compaction: a few larger objects, the same rows for every reader, and a resume computes nothing
    assert main(["compact", sweep, "--json"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert {k["kind"]: (k["files_before"], k["files_after"]) for k in c["kinds"]} == {"probe": (4, 1), "train": (2, 1)}
    assert not [o for o in objects(sweep) if o.startswith(("probe/part-", "train/part-"))]
    pd.testing.assert_frame_equal(before, results.load(sweep).sort_values("point_id", ignore_index=True))
    assert len(pd.read_parquet(f"{sweep}/probe")) == 4 and len(pd.read_parquet(f"{sweep}/train")) == 2
    assert main(["sweep", "run", str(spec), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (s["skipped"], s["ran"]) == (6, 0)
    # the lease, on S3: a second driver refuses while one holds it
    with Lease(Store(f"{s3}/reconent", "s3sweep"), settle=0):
        assert main(["sweep", "run", str(spec)]) == 2
        assert f"on {socket.gethostname()}" in capsys.readouterr().err
    # reconent report straight from s3://
    out = tmp_path / "report"
    assert main(["report", sweep, "-o", str(out), "--n-boot", "0", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["sweeps"], r["n_probe_points"], r["n_train_points"]) == (["s3sweep"], 4, 2)
    # the training budget comes from the spec saved on S3 (read through the Store), not the largest stored
    assert (r["budgets"]["epochs"], r["budgets"]["epochs_source"]) == (2, "spec")
    saved = Store(f"{s3}/reconent", "s3sweep").load_spec()
    html = (out / "report.html").read_text()
    assert f"{sweep}/specs/spec.yaml" in html and f"spec_hash: {saved['spec_hash']}" in html


def test_lease_on_s3_refuses_a_live_holder_and_takes_over_a_stale_one(s3):
    st = Store(f"{s3}/x", "sw")
    with Lease(st, settle=0, heartbeat=0.05) as first:
        with pytest.raises(LeaseHeld, match=f"on {socket.gethostname()}"):
            Lease(st, settle=0).acquire()
        assert json.loads(objects_text(st))["token"] == first.token
    assert objects(f"{s3}/x/sw") == []  # released: deleted
    fs = st.fs
    with fs.open_output_stream(st.path("_lease.json")) as f:
        f.write(json.dumps({"host": "node-9", "pid": 7, "token": "old", "heartbeat": time.time() - 900}).encode())
    with pytest.warns(UserWarning, match="node-9"):
        with Lease(st, stale_after=60, settle=0) as mine:
            assert json.loads(objects_text(st))["token"] == mine.token


def objects_text(st: Store) -> str:
    with st.fs.open_input_stream(st.path("_lease.json")) as f:
        return f.read().decode()


def test_compaction_on_s3_survives_a_crash_between_write_and_delete(s3, monkeypatch):
    """The state a SIGKILL leaves between the compacted object and the deletes (tests/test_reliability.py
    kills a real process on local disk): every reconent reader sees each point once, a rerun finishes."""
    import numpy as np

    from reconent.sweep.spec import load_spec
    from reconent.sweep.trial import empty_row

    spec = load_spec({"name": "c", "dataset": "mnist5k", "storage": f"{s3}/r",
                      "grid": {"sigma_w2": [0.5, 1.0, 1.5, 2.0], "depth": [2, 3]}}, check_storage=False)
    st = Store(f"{s3}/r", "c")
    now = datetime.now(timezone.utc)
    for p in spec.points():
        if p["kind"] == "probe":
            r = empty_row(p, spec_hash=spec.spec_hash)
            r.update(status="ok", started_at=now, finished_at=now, cutoff=1,
                     relative_entropy_norm_median=list(np.linspace(1, 0, p["depth"])))
            st.write_part("probe", r)
    class Crash(Exception):
        pass

    # stop right after the compacted object is written, before any part is deleted
    put = Store._put

    def crashing_put(self, folder, name, data):
        out = put(self, folder, name, data)
        if name.startswith("compact-"):
            raise Crash
        return out

    monkeypatch.setattr(Store, "_put", crashing_put)
    with pytest.raises(Crash):
        Store(f"{s3}/r", "c").compact("probe")
    monkeypatch.setattr(Store, "_put", put)
    names = objects(f"{s3}/r/c/probe")
    assert sum(n.startswith("compact-") for n in names) == 1 and sum(n.startswith("part-") for n in names) == 8
    assert len(results.load(f"{s3}/r/c")) == 8 and len(Store(f"{s3}/r", "c").done_ids("probe")) == 8
    Store(f"{s3}/r", "c").compact("probe")
    assert [n for n in objects(f"{s3}/r/c/probe") if n.startswith("part-")] == []
    assert len(pd.read_parquet(f"{s3}/r/c/probe")) == 8
