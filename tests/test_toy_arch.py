"""A new architecture with its own sizing setting and its own activation, declared in this file alone: it builds,
the probe runs on it, a sweep spec grids over its setting, and its setting is a stored column that reads back.
Registering it changes no existing point id (ids pinned from main before settings were registrable)."""
from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch

from reconent.errors import UserError
from reconent.science import activations, archs
from reconent.science.archs import Arch, Setting

GATE_DEFAULT = 6


def _isru(x):  # inverse square root unit: a φ the mean-field theory has no maths for
    return x * torch.rsqrt(1 + x * x)


def _even(v):
    if v < 2 or v % 2:
        raise UserError(f"gate_width must be an even number >= 2, got {v}")


def _gated(depth, in_shape, *, size, activation, sigma_w2, sigma_b2, seed):
    """Dense blocks of `gate_width` units after the flattened input (the existing blocks, its own sizing)."""
    from reconent.science.models import FORWARD, Body, Dense, stream

    w, n = size or GATE_DEFAULT, math.prod(in_shape)
    sizes = [n] + [w] * depth
    return Body([Dense(sizes[l - 1], sizes[l], activation, sigma_w2, sigma_b2, stream(seed, l, FORWARD))
                 for l in range(1, depth + 1)], (n,), seed, "gated")


GATE = Setting("gate_width", int, "units of each gated block; null = 6", check=_even)


@contextlib.contextmanager
def registered():
    """The toy's activation and architecture (its setting with it), removed again on the way out."""
    activations.register("isru", _isru)
    archs.register(Arch("gated", _gated, size=GATE, default_size=GATE_DEFAULT, rtol=0.01, doc="a test-only toy"))
    try:
        yield
    finally:
        archs.unregister("gated")
        activations.unregister("isru")


@pytest.fixture
def toy():
    from reconent.sweep import columns

    with registered():
        yield
    assert "gated" not in archs.names() and "gate_width" not in archs.sizes()
    assert "gate_width" not in columns.axes() and "gate_width" not in columns.SCHEMAS["probe"].names


def _spec(**grid):
    return {"name": "toy", "dataset": "mnist5k", "arch": "gated",
            "grid": {"sigma_w2": [1.76], "depth": [2], "activation": ["isru"], **grid},
            "probe": {"steps": 8, "batch_size": 32, "train_samples": 64, "eval_samples": 8}}


def test_the_toy_builds_with_its_setting_and_its_activation(toy):
    assert archs.get("gated").size == "gate_width" and "gate_width" in archs.sizes()
    body = archs.build("gated", 3, (4, 4), gate_width=4, activation="isru", seed=1)
    assert [b.n_out for b in body] == [4, 4, 4] and body.in_shape == (16,)
    assert [b.n_out for b in archs.build("gated", 2, (16,))] == [GATE_DEFAULT] * 2  # null: the arch's default
    h = torch.linspace(-3, 3, 16).reshape(1, 16)
    assert torch.allclose(body[0](h), _isru(h @ body[0].weight.t() + body[0].bias))  # its φ, not tanh
    with pytest.raises(UserError, match="^gate_width must be an even number >= 2, got 3$"):  # its own check
        archs.build("gated", 2, (16,), gate_width=3)
    with pytest.raises(UserError, match="^width does not apply to the gated; it has gate_width$"):
        archs.build("gated", 2, (16,), width=8)
    with pytest.raises(UserError, match="^gate_width does not apply to the mlp; it has width$"):
        archs.build("mlp", 2, (16,), gate_width=4)


def test_a_second_declaration_of_a_setting_is_refused(toy):
    with pytest.raises(ValueError, match="'gate_width' is declared already"):
        archs.register(Arch("other", _gated, size=Setting("gate_width", float), default_size=None, rtol=0.01))
    with pytest.raises(ValueError, match="'depth'"):
        archs.register(Arch("other", _gated, size=Setting("depth"), default_size=None, rtol=0.01))
    assert "other" not in archs.names()


def test_a_setting_of_another_type_is_a_column_of_that_type():
    import pyarrow as pa

    from reconent.sweep import columns

    archs.register(Arch("keyed", _gated, size=Setting("variant", str, "which variant"), default_size=None, rtol=0.01))
    try:
        archs.check("variant", "b")  # a str setting without a check of its own takes any value
        assert columns.SCHEMAS["train"].field("variant").type == pa.string()
        assert columns.axes().index("variant") == columns.axes().index("channels") + 1  # after the built-ins
    finally:
        archs.unregister("keyed")
    assert "variant" not in columns.SCHEMAS["train"].names


def test_the_probe_runs_on_the_toy(toy):
    from reconent.science.probe import probe

    g = torch.Generator().manual_seed(0)
    body = archs.build("gated", 3, (16,), gate_width=8, activation="isru")
    r = probe(body, torch.rand(64, 16, generator=g), torch.rand(8, 16, generator=g), steps=8, batch_size=32)
    assert r.status == "ok" and r.relative_entropy.shape == (3, 8)
    assert np.isfinite(r.decoder_loss).all() and (r.decoder_loss > 0).all()


def test_a_spec_grids_over_the_setting_and_its_row_stores_and_reads_it(toy, tmp_path):
    from reconent.sweep.spec import SpecError, load_spec, point_id
    from reconent.sweep.store import Store
    from reconent.sweep.trial import run_point

    pts = load_spec(_spec(gate_width=[4, 8])).points()
    assert [p["gate_width"] for p in pts] == [4, 8] and [p["activation"] for p in pts] == ["isru", "isru"]
    assert pts[0]["width"] is None and pts[0]["channels"] is None
    assert len({point_id(p) for p in pts}) == 2  # the setting is part of the id
    default = load_spec(_spec()).points()[0]
    assert default["gate_width"] is None and point_id(default) not in {point_id(p) for p in pts}

    row = run_point(pts[1], "cpu")
    assert row["status"] == "ok", row.get("error")
    assert row["gate_width"] == 8 and row["point_id"] == point_id(pts[1]) and len(row["decoder_loss"]) == 2
    store = Store(str(tmp_path), "toy")
    store.write_part("probe", row)
    back = store.read("probe")
    assert back["gate_width"].tolist() == [8] and back["point_id"].tolist() == [point_id(pts[1])]
    assert store.done("probe") == {point_id(pts[1]): "ok"}  # the driver sees it done: it is not computed again

    with pytest.raises(SpecError, match=r"^grid.gate_width\[1\]: gate_width must be an even number >= 2, got 3$"):
        load_spec(_spec(gate_width=[4, 3]))
    with pytest.raises(SpecError, match=r"^grid.gate_width\[0\]: Input should be a valid integer"):
        load_spec(_spec(gate_width=["wide"]))
    with pytest.raises(SpecError, match=r"^grid.gate_width: gate_width sizes the gated; for mlp use grid.width$"):
        load_spec({**_spec(gate_width=[4]), "arch": "mlp"})


def test_the_setting_is_unknown_once_the_toy_is_gone():
    from reconent.sweep.spec import SpecError, load_spec

    with registered():
        load_spec(_spec(gate_width=[4]))
    with pytest.raises(SpecError, match=r"^grid.gate_width: unknown key; allowed: sigma_w2, depth, sigma_b2, seed, "
                                        "width, channels, activation, arch$"):
        load_spec({**_spec(gate_width=[4]), "arch": "mlp"})


def test_a_part_stored_before_the_setting_existed_reads_it_as_null(tmp_path):
    from reconent.sweep.spec import load_spec, point_id
    from reconent.sweep.store import Store
    from reconent.sweep.trial import empty_row

    p = load_spec({"name": "old", "dataset": "mnist5k", "grid": {"sigma_w2": [1.76], "depth": [10]}}).points()[0]
    store = Store(str(tmp_path), "old")
    store.write_part("probe", {**empty_row(p), "status": "error"})  # written without a gate_width column
    with registered():
        back = store.read("probe")
        assert "gate_width" in back and back["gate_width"].isna().all()
        assert back["point_id"].tolist() == [point_id(p)] == ["77e8cb0c45e6cff8"]  # pinned in test_registry too
        assert store.done("probe") == {point_id(p): "error"}


# Ids of existing points, computed on main at 0482cd0 before settings were registrable:
# load_spec(PINNED_SPEC).points(), in order, and its spec hash.
PINNED_SPEC = {"name": "pin", "dataset": "mnist5k", "train": {"points": "all"},
               "grid": {"arch": ["mlp", "cnn"], "sigma_w2": [1.0, 1.76], "depth": [2], "width": [64], "channels": [8]}}
PINNED_IDS = ["55072628010b798f", "0d8228ca1b05c219", "b8904032b42e6b8b", "ecb0848f81f5983b",  # probe: mlp, cnn
              "c08df5bf52331124", "862ff20c5316afcb", "b8382c7f94b1f503", "87de2e46f56c4dad"]  # train: mlp, cnn
PINNED_HASH = "1d60602b48ce1818"


@pytest.mark.parametrize("with_toy", [False, True])
def test_existing_point_ids_do_not_change(with_toy):
    from reconent.sweep.spec import load_spec, point_id

    with registered() if with_toy else contextlib.nullcontext():
        s = load_spec(PINNED_SPEC)
        pts = s.points()
        assert [(p["kind"], p["arch"]) for p in pts] == [("probe", "mlp")] * 2 + [("probe", "cnn")] * 2 + [
            ("train", "mlp")] * 2 + [("train", "cnn")] * 2
        assert [point_id(p) for p in pts] == PINNED_IDS and s.spec_hash == PINNED_HASH
        assert ("gate_width" in pts[0]) is with_toy  # a column of every point while registered, null here


def test_the_analysis_keeps_each_value_of_the_setting_a_group_of_its_own(toy):
    # Registered after the analysis was imported: its grouping must still see gate_width, or the two widths' probes
    # would be pooled into one boundary (median cutoff 7 instead of 5 and 9).
    import pandas as pd

    from reconent.analysis import frames, synthetic
    from reconent.analysis.boundary import predicted_boundary

    rows = [dict(synthetic.probe_row(1.0, 20, cut, seed=s, arch="gated", activation="isru", width=None),
                 gate_width=gw) for gw, cut in ((4, 5), (8, 9)) for s in (0, 1)]
    probes = frames.probe_cutoffs(frames.check_columns(pd.DataFrame(rows), "probe", []))
    assert "gate_width" in frames.group_keys()
    b = predicted_boundary(probes, n_boot=0).sort_values("gate_width")
    assert b["gate_width"].tolist() == [4.0, 8.0] and b["pred_lo"].tolist() == [5, 9]
    key = tuple(b.iloc[0][frames.group_keys()])
    assert frames.group_label(key) == "gated isru, gate_width 4, σ_b²=0.05, mnist5k"
