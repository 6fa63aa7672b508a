"""Parquet parts: atomic writes, validation and quarantine, the documented schema, URIs."""
from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from reconent.sweep import store as store_mod
from reconent.sweep.spec import load_spec, point_id
from reconent.sweep.store import SCHEMAS, Store
from reconent.sweep.trial import empty_row

DOC = Path(__file__).resolve().parents[1] / "docs" / "schema.md"


def rows(tmp_path, kind="probe", n_depths=3):
    """Rows as the trial makes them (trial.empty_row), filled with plausible results."""
    s = load_spec({"name": "t", "dataset": "mnist5k", "storage": str(tmp_path), "train": {"points": "all"},
                   "grid": {"sigma_w2": [0.5, 1.76], "depth": list(range(2, 2 + n_depths))}})
    out = []
    for p in s.points():
        if p["kind"] != kind:
            continue
        r = empty_row(p, spec_hash=s.spec_hash, node_id="abc")
        now = datetime.now(timezone.utc)
        r.update(status="ok", seconds=0.5, device="cpu", started_at=now, finished_at=now)
        if kind == "probe":
            L = p["depth"]
            r.update({c: np.linspace(0, 1, L) + i for i, c in enumerate(store_mod.PROFILES)})
            r.update(cutoff=L - 1, steps_run=16, train_seconds=0.1, path="stacked")
        else:
            r.update(accuracy=[0.3, 0.7, 0.85], train_loss=[2.0, 1.0, 0.5], epochs_run=3, reached=True,
                     final_accuracy=0.85)
        out.append(r)
    return out


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_write_is_atomic_and_round_trips(tmp_path):
    st = Store(str(tmp_path), "sw")
    rs = rows(tmp_path)
    for r in rs:
        st.write_part("probe", r)
    names = _files(tmp_path / "sw" / "probe")
    assert names == sorted(f"part-{r['point_id']}.parquet" for r in rs)  # nothing else: no _tmp- left over
    md = pq.read_metadata(tmp_path / "sw" / "probe" / names[0]).metadata
    assert md[b"reconent_schema_version"] == str(store_mod.SCHEMA_VERSION).encode() and md[b"reconent_kind"] == b"probe"
    df = pd.read_parquet(tmp_path / "sw" / "probe")  # plain pandas reads the folder
    assert list(df.columns) == SCHEMAS["probe"].names and len(df) == len(rs)
    by_id = df.set_index("point_id")
    for r in rs:
        got = by_id.loc[r["point_id"]]
        for c in store_mod.PROFILES:
            np.testing.assert_allclose(got[c], r[c])
        assert got["depth"] == r["depth"] and got["sigma_w2"] == r["sigma_w2"] and got["node_id"] == "abc"
    assert st.done("probe") == {r["point_id"]: "ok" for r in rs}
    assert st.read("probe").equals(df.sort_values("point_id", ignore_index=True))


def test_train_parts_round_trip(tmp_path):
    st = Store(str(tmp_path), "sw")
    for r in rows(tmp_path, "train"):
        st.write_part("train", r)
    df = pd.read_parquet(tmp_path / "sw" / "train")
    assert list(df.columns) == SCHEMAS["train"].names
    assert [list(a) for a in df["accuracy"]] == [[0.3, 0.7, 0.85]] * len(df) and df["reached"].all()


@pytest.mark.parametrize("section", ["common", "probe", "train"])
def test_documented_schema_matches_code(section):
    """docs/schema.md's column tables are exactly what reconent.sweep.columns declares
    (regenerate them with `python -m reconent.sweep.columns`)."""
    from reconent.sweep import columns

    found = re.findall(rf"<!-- columns:{section} -->\n(.*?)\n<!-- /columns:{section} -->", DOC.read_text(), re.S)
    assert len(found) == 1, f"docs/schema.md needs one <!-- columns:{section} --> block"
    assert found[0] == columns.markdown(section)


def test_documented_tables_cover_every_column_of_every_kind():
    from reconent.sweep import columns

    for kind, schema in SCHEMAS.items():
        documented = [line.split("|")[1].strip() for sec in ("common", kind)
                      for line in columns.markdown(sec).splitlines()[2:]]
        assert sorted(documented) == sorted(schema.names), kind


def test_crash_mid_write_leaves_no_part(tmp_path, monkeypatch):
    st = Store(str(tmp_path), "sw")
    r = rows(tmp_path)[0]

    def dies(table, f, **kw):  # half a file, then the writer dies
        f.write(b"PAR1 half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(pq, "write_table", dies)
    with pytest.raises(KeyboardInterrupt):
        st.write_part("probe", r)
    assert _files(tmp_path / "sw" / "probe") == []  # neither a final name nor a leftover tmp
    assert st.done_ids("probe") == set()


def test_truncated_part_is_quarantined_and_recomputed(tmp_path):
    st = Store(str(tmp_path), "sw")
    rs = rows(tmp_path)
    paths = [st.write_part("probe", r) for r in rs]
    good, bad, garbage = rs[0]["point_id"], rs[1]["point_id"], rs[2]["point_id"]
    data = Path(paths[1]).read_bytes()
    Path(paths[1]).write_bytes(data[: len(data) // 2])  # a truncated upload
    Path(paths[2]).write_bytes(b"not parquet at all")
    with pytest.warns(UserWarning, match="moved to"):
        done = st.done_ids("probe")
    assert done == {r["point_id"] for r in rs} - {bad, garbage} and good in done
    q = tmp_path / "sw" / "quarantine" / "probe"
    moved = _files(q)
    assert sum(n.endswith(f"part-{bad}.parquet") for n in moved) == 1
    assert sum(n.endswith(f"part-{garbage}.parquet.why.txt") for n in moved) == 1
    assert len(st.quarantined) == 2 and not Path(paths[1]).exists()
    # Quarantined bytes are kept as they were (never deleted), and a rewrite makes the point valid again.
    kept = next(q / n for n in moved if n.endswith(f"part-{bad}.parquet"))
    assert kept.read_bytes() == data[: len(data) // 2]
    st.write_part("probe", rs[1])
    assert bad in st.done_ids("probe")


def test_part_must_be_a_reconent_part_of_its_point(tmp_path):
    st = Store(str(tmp_path), "sw")
    rs = rows(tmp_path)
    path = Path(st.write_part("probe", rs[0]))
    other = path.with_name(f"part-{rs[1]['point_id']}.parquet")
    os.replace(path, other)  # a valid file under the wrong name
    plain = path.parent / f"part-{rs[2]['point_id']}.parquet"
    pd.DataFrame({"point_id": [rs[2]["point_id"]]}).to_parquet(plain)  # no schema version
    with pytest.warns(UserWarning):
        assert st.done_ids("probe") == set()
    assert len(_files(tmp_path / "sw" / "quarantine" / "probe")) == 4  # 2 parts + 2 reasons


def test_tmp_files_are_ignored_and_stale_ones_cleaned(tmp_path):
    st = Store(str(tmp_path), "sw")
    rs = rows(tmp_path)
    st.write_part("probe", rs[0])
    folder = tmp_path / "sw" / "probe"
    (folder / f"_tmp-{rs[1]['point_id']}-dead.parquet").write_bytes(b"PAR1 partial")
    assert len(pd.read_parquet(folder)) == 1  # readers skip _tmp- names
    assert len(st.read("probe")) == 1
    assert st.done_ids("probe") == {rs[0]["point_id"]}
    assert len(_files(folder)) == 2  # a young tmp may belong to a live writer: kept
    assert st.done_ids("probe", tmp_max_age=0) == {rs[0]["point_id"]}
    assert _files(folder) == [f"part-{rs[0]['point_id']}.parquet"]


def test_rows_outside_the_schema_are_refused(tmp_path):
    st = Store(str(tmp_path), "sw")
    r = rows(tmp_path)[0]
    with pytest.raises(ValueError, match=f"outside schema v{store_mod.SCHEMA_VERSION}: colour"):
        st.write_part("probe", {**r, "colour": "red"})
    with pytest.raises(ValueError, match="point_id of 16 hex"):
        st.write_part("probe", {**r, "point_id": "../../etc"})
    with pytest.raises(ValueError, match="kind must be one of"):
        st.write_part("eval", r)
    with pytest.raises(ValueError, match="does not fit"):
        st.write_part("probe", {**r, "depth": "deep"})
    assert not (tmp_path / "sw").exists()


def test_error_rows_keep_null_profiles(tmp_path):
    st = Store(str(tmp_path), "sw")
    p = load_spec({"name": "t", "dataset": "mnist5k", "storage": str(tmp_path),
                   "grid": {"sigma_w2": [1.0], "depth": [3]}}).points()[0]
    r = empty_row(p)
    r.update(status="error", error="ValueError: boom", started_at="2026-01-01T00:00:00+00:00")
    st.write_part("probe", r)
    df = st.read("probe")
    assert df.loc[0, "status"] == "error" and df.loc[0, "decoder_loss"] is None
    assert df.loc[0, "started_at"] == pd.Timestamp("2026-01-01", tz="UTC")
    assert st.done("probe") == {point_id(p): "error"}


def test_empty_store_reads_empty_frame(tmp_path):
    st = Store(str(tmp_path), "nothing")
    assert st.done_ids("probe") == set() and st.kinds() == []
    df = st.read("train")
    assert len(df) == 0 and list(df.columns) == SCHEMAS["train"].names
    assert st.load_spec() is None
    assert not (tmp_path / "nothing").exists()  # looking creates nothing


def test_spec_saved_next_to_results(tmp_path):
    s = load_spec({"name": "t", "dataset": "mnist5k", "storage": str(tmp_path),
                   "grid": {"sigma_w2": [1.0], "depth": [3]}})
    st = Store(str(tmp_path), "t")
    assert st.save_spec(s.resolved()) == s.spec_hash
    assert _files(tmp_path / "t" / "specs") == sorted([f"{s.spec_hash}.yaml", "spec.yaml"])
    assert st.load_spec() == s.resolved()
    text = Store.at(str(tmp_path / "t")).spec_text()  # a sweep's folder, as the report is given it
    assert text == (tmp_path / "t" / "specs" / "spec.yaml").read_text() and f"spec_hash: {s.spec_hash}" in text
    assert [x.name for x in Store.find(str(tmp_path))] == ["t"] and Store.at(str(tmp_path / "u")).spec_text() is None
    assert load_spec(tmp_path / "t" / "specs" / "spec.yaml").points() == s.points()  # runs again as is


def test_uris(tmp_path, monkeypatch):
    a = Store(tmp_path.as_uri(), "sw")  # file:// URI
    assert isinstance(a.fs, pafs.LocalFileSystem) and a.root == f"{tmp_path}/sw"
    a.write_part("probe", rows(tmp_path)[0])
    assert len(Store(str(tmp_path), "sw").read("probe")) == 1
    monkeypatch.chdir(tmp_path)
    assert Store("rel", "sw").root == f"{tmp_path}/rel/sw"  # relative paths are made absolute
    # s3:// builds an S3 filesystem without touching the network when the region is given.
    s3 = Store("s3://bucket/prefix?region=us-east-1", "sw")
    assert s3.fs.type_name == "s3" and s3.root == "bucket/prefix/sw"
    gs = Store("gs://bucket/prefix", "sw")
    assert gs.fs.type_name == "gcs" and gs.root == "bucket/prefix/sw"


def test_store_works_on_a_non_local_filesystem(tmp_path):
    """The same code through a filesystem that is not pyarrow's LocalFileSystem (as S3/GCS are): no folder
    exchange for compaction, no conditional writes (the lease falls back to write-and-read-back)."""
    from reconent.sweep.lease import Lease, LeaseHeld

    st = Store(str(tmp_path), "sw")
    (tmp_path / "bucket").mkdir()
    st.fs, st.root = pafs.SubTreeFileSystem(str(tmp_path / "bucket"), pafs.LocalFileSystem()), "sw"
    assert not st.conditional
    rs = rows(tmp_path)
    for r in rs:
        st.write_part("probe", r)
    assert st.done_ids("probe") == {r["point_id"] for r in rs}
    assert len(st.read("probe")) == len(rs)
    assert [i.base_name for i in st._files("probe") if i.base_name.startswith("_")] == []
    assert st.compact("probe")["files_after"] == 1 and _files(tmp_path / "bucket" / "sw" / "probe")[0].startswith(
        "compact-")
    with Lease(st, settle=0, heartbeat=60):
        with pytest.raises(LeaseHeld):
            Lease(st, settle=0).acquire()
    assert not (tmp_path / "bucket" / "sw" / "_lease.json").exists()


# One probe point's ids as the released code named them, computed once (schema 1: every setting it had
# hashed, rtol included; schema 2 and 3: without the analysis-only settings) and pinned here, so that a
# change to the id formula or to the migration cannot pass by changing both sides of a comparison.
PINNED = {"point": {"sigma_w2": [1.76], "depth": [3]}, "v1": "91ec65348a76acf0", "v2": "a6bb61579023f5b3",
          "v3": "a6bb61579023f5b3"}


@pytest.mark.parametrize("version", [1, 2])
def test_old_parts_read_and_migrate_to_their_pinned_ids(tmp_path, version):
    from test_reliability import write_old_part

    s = load_spec({"name": "t", "dataset": "mnist5k", "storage": str(tmp_path), "probe": {"epochs": 1},
                   "grid": PINNED["point"]}, check_storage=False)
    (p,) = [q for q in s.points() if q["kind"] == "probe"]
    assert point_id(p) == PINNED["v3"]
    r = empty_row(p, spec_hash=s.spec_hash)
    r.update(status="ok", started_at=datetime.now(timezone.utc), finished_at=datetime.now(timezone.utc), cutoff=2,
             steps_run=63, relative_entropy_norm_median=[1.0, 0.5, 0.2])
    folder = tmp_path / "t" / "probe"
    write_old_part(folder, r, p, version)
    assert _files(folder) == [f"part-{PINNED[f'v{version}']}.parquet"]  # as that schema named it
    st = Store(str(tmp_path), "t")
    df = st.read("probe")  # the read path: the current id and meaning, nothing rewritten
    assert list(df["point_id"]) == [PINNED["v3"]] and list(df["steps_run"]) == [63] and df["steps"].isna().all()
    assert _files(folder) == [f"part-{PINNED[f'v{version}']}.parquet"]
    assert st.done_ids("probe") == {PINNED["v3"]}  # the write path: the driver migrates the part
    assert _files(folder) == [f"part-{PINNED['v3']}.parquet"]
    md = pq.read_metadata(folder / f"part-{PINNED['v3']}.parquet").metadata
    assert md[b"reconent_schema_version"] == str(store_mod.SCHEMA_VERSION).encode()
    assert Store(str(tmp_path), "t").read("probe").drop(columns="schema_version").equals(
        df.drop(columns="schema_version"))  # every value kept
