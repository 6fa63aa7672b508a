"""The user-facing loader: sweeps in, tidy frames out."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reconent.sweep import results
from reconent.sweep.store import PROFILES, SCHEMAS, Store
from test_store import rows


@pytest.fixture
def storage(tmp_path):
    """Two sweeps under one storage root: 'a' with probe and train parts, 'b' with probe parts only."""
    for name, n in (("a", 3), ("b", 2)):
        st = Store(str(tmp_path), name)
        for r in rows(tmp_path, "probe", n_depths=n):
            st.write_part("probe", {**r, "sweep": name})
    for r in rows(tmp_path, "train"):
        Store(str(tmp_path), "a").write_part("train", {**r, "sweep": "a"})
    return tmp_path


def test_load_one_sweep_a_root_or_a_list(storage):
    a = results.load(storage / "a")
    assert len(a) == 2 * 3 and set(a["sweep"]) == {"a"} and list(a.columns) == SCHEMAS["probe"].names
    both = results.load(str(storage))
    assert len(both) == 6 + 2 * 2 and set(both["sweep"]) == {"a", "b"}
    assert len(results.load([str(storage / "a"), storage / "b"])) == len(both)
    assert len(results.load([str(storage / "a"), str(storage)])) == len(both)  # each sweep once
    assert len(results.load(storage.as_uri() + "/a")) == 6
    # The same rows as plain pandas.
    assert len(pd.read_parquet(storage / "a" / "probe")) == len(a)


def test_layers_long_table(storage):
    df = results.load(storage / "a")
    long = results.layers(df)
    assert len(long) == df["depth"].sum()
    assert set(PROFILES) | {"layer", "sigma_w2", "sigma_b2", "depth", "seed", "point_id", "status", "cutoff"} \
        <= set(long.columns)
    for pid, g in long.groupby("point_id"):
        row = df.set_index("point_id").loc[pid]
        assert list(g["layer"]) == list(range(1, row["depth"] + 1))
        assert (g["sigma_w2"] == row["sigma_w2"]).all() and (g["depth"] == row["depth"]).all()
        np.testing.assert_allclose(g["relative_entropy_median"], row["relative_entropy_median"])
        np.testing.assert_allclose(g["decoder_loss"], row["decoder_loss"])


def test_layers_skip_rows_without_profiles(storage):
    df = results.load(storage / "a")
    df.loc[0, list(PROFILES)] = None  # an 'error' row
    df.loc[0, "status"] = "error"
    long = results.layers(df)
    assert len(long) == df["depth"].sum() - df.loc[0, "depth"]
    assert df.loc[0, "point_id"] not in set(long["point_id"])
    assert len(results.layers(df.iloc[:0])) == 0


def test_training_curves(storage):
    tr = results.training(storage / "a")
    assert len(tr) == 6 and tr["reached"].all()
    c = results.curves(tr)
    assert len(c) == 6 * 3 and list(c["epoch"][:3]) == [1, 2, 3]
    assert list(c["accuracy"][:3]) == [0.3, 0.7, 0.85] and {"threshold", "sigma_w2", "depth"} <= set(c.columns)


def test_missing_results_are_clear(storage, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(results.NoResults, match=r"no results under .*; run `reconent sweep run SPEC` first"):
        results.load(str(empty))
    with pytest.raises(results.NoResults):
        results.load(str(empty / "missing"))
    # A sweep with probe parts only: its training table is empty but has the documented columns.
    tr = results.training(storage / "b")
    assert len(tr) == 0 and list(tr.columns) == SCHEMAS["train"].names
    with pytest.raises(ValueError, match="kind must be"):
        results.load(storage, kind="eval")


def test_corrupt_part_is_skipped_by_readers(storage):
    part = next((storage / "b" / "probe").glob("part-*.parquet"))
    part.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="skipping unreadable part"):
        df = results.load(storage / "b")
    assert len(df) == 3 and part.exists()  # reading never moves or deletes anything
