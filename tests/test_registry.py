"""A new architecture is one `register(Arch(...))`: declared here, in the test only, it reaches
build, the probe, spec validation, a sweep point and the CLI without touching the package."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from reconent.science import archs
from reconent.science.archs import Arch

TOY_WIDTH = 12


def _toy_build(depth, in_shape, *, size, activation, sigma_w2, sigma_b2, seed):
    """A stack of Dense blocks of one small fixed width (the default), after the flattened input."""
    from reconent.science.models import FORWARD, Body, Dense, stream

    w, n = size or TOY_WIDTH, math.prod(in_shape)
    sizes = [n] + [w] * depth
    blocks = [Dense(sizes[l - 1], sizes[l], activation, sigma_w2, sigma_b2, stream(seed, l, FORWARD))
              for l in range(1, depth + 1)]
    return Body(blocks, (n,), seed, "toy")


@pytest.fixture
def toy():
    a = archs.register(Arch("toy", _toy_build, size="width", default_size=TOY_WIDTH, rtol=0.01,
                            bench={"sigma_w2": 1.76, "sigma_b2": 0.05, "in_shape": (16,)}, doc="a test-only toy"))
    try:
        yield a
    finally:
        archs.unregister("toy")
    assert "toy" not in archs.names()


def test_register_and_unregister(toy):
    assert "toy" in archs.names() and archs.get("toy") is toy
    assert {"mlp", "cnn", "resnet"} <= set(archs.names())


def test_unregister_unknown_name_is_a_value_error():
    with pytest.raises(ValueError, match="nope"):
        archs.unregister("nope")


def test_build_and_probe_the_toy(toy):
    from reconent.science.probe import probe

    body = archs.build("toy", 3, (4, 4), seed=1)
    assert len(body) == 3 and body.in_shape == (16,) and body.arch == "toy"
    assert [b.n_out for b in body] == [TOY_WIDTH] * 3
    assert body[1].n_in == TOY_WIDTH
    assert len(archs.build("toy", 2, (16,), width=5)[0].bias) == 5
    g = torch.Generator().manual_seed(0)
    r = probe(body, torch.rand(96, 16, generator=g), torch.rand(10, 16, generator=g), epochs=1, rtol=toy.rtol)
    assert r.status == "ok" and r.relative_entropy.shape == (3, 10) and r.path == "generic"  # 16 -> 12: not square
    assert np.isfinite(r.decoder_loss).all() and (r.decoder_loss > 0).all()


def test_a_sweep_spec_and_a_sweep_point_of_the_toy(toy, tmp_path):
    from reconent.sweep.spec import load_spec
    from reconent.sweep.trial import run_point

    spec = load_spec({"name": "toy", "dataset": "mnist5k", "arch": "toy", "storage": str(tmp_path / "s"),
                      "grid": {"sigma_w2": [1.76], "depth": [2, 3], "width": [8]},
                      "probe": {"epochs": 1, "train_samples": 64, "eval_samples": 8}}, check_storage=False)
    points = spec.points()
    assert [p["arch"] for p in points] == ["toy", "toy"]
    assert all(p["rtol"] == toy.rtol for p in points)  # the arch's default cutoff tolerance
    p = max(points, key=lambda p: p["depth"])
    row = run_point(p, "cpu")
    assert row["status"] == "ok", row.get("error")
    assert row["arch"] == "toy" and row["depth"] == 3 and len(row["relative_entropy_median"]) == 3
    assert len(row["relative_entropy_norm_median"]) == 3 and row["relative_entropy_norm_median"][-1] == pytest.approx(1)


def test_an_unregistered_arch_is_refused_by_the_spec(tmp_path):
    from reconent.sweep.spec import SpecError, load_spec

    with pytest.raises(SpecError, match="arch"):
        load_spec({"name": "toy", "dataset": "mnist5k", "arch": "toy", "grid": {"sigma_w2": [1.0], "depth": [2]}},
                  check_storage=False)


def test_the_cli_offers_and_runs_the_toy(toy, capsys):
    from reconent import cli

    assert cli.parser().parse_args(["probe", "--arch", "toy", "--depth", "2"]).arch == "toy"
    code = cli.main(["probe", "--arch", "toy", "--depth", "2", "--epochs", "1", "--train-samples", "64",
                     "--eval-samples", "8", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["arch"] == "toy" and out["layers"] == 2 and out["status"] == "ok"


def test_a_misspelt_setting_is_named():
    with pytest.raises(ValueError, match="chanels"):
        archs.build("mlp", 2, (784,), chanels=8)


def _softsign(x):  # a φ the mean-field theory has no maths for
    return x / (1 + x.abs())


@pytest.fixture
def softsign():
    from reconent.science import activations

    a = activations.register("softsign", _softsign)
    try:
        yield a
    finally:
        activations.unregister("softsign")
    assert "softsign" not in archs.activations()


def test_a_registered_activation_reaches_the_spec_the_trial_and_the_row(toy, softsign, tmp_path):
    """An activation registered from this file alone, on the toy: the spec accepts it on its grid, the trial builds
    and probes with its torch function, and the row stores it; the theory claims no maths for it."""
    from reconent.science import activations
    from reconent.sweep.spec import SpecError, load_spec, point_id
    from reconent.sweep.trial import run_point

    assert "softsign" in archs.activations() and not activations.get("softsign").mean_field
    body = archs.build("toy", 2, (16,), activation="softsign")
    h = torch.linspace(-3, 3, 16).reshape(1, 16)
    assert torch.equal(body[0](h), _softsign(h @ body[0].weight.t() + body[0].bias))  # its φ, not tanh
    grid = {"sigma_w2": [1.76], "depth": [2], "activation": ["tanh", "softsign"]}
    spec = load_spec({"name": "toy", "dataset": "mnist5k", "arch": "toy", "storage": str(tmp_path / "s"), "grid": grid,
                      "probe": {"epochs": 1, "train_samples": 64, "eval_samples": 8}}, check_storage=False)
    p = next(p for p in spec.points() if p["activation"] == "softsign")
    row = run_point(p, "cpu")
    assert row["status"] == "ok", row.get("error")
    assert row["activation"] == "softsign" and row["point_id"] == point_id(p) and len(row["decoder_loss"]) == 2
    with pytest.raises(SpecError, match=r"grid.activation\[0\]: unknown activation 'gelu'; allowed: tanh, relu, "
                                        "softsign"):
        load_spec({"name": "toy", "dataset": "mnist5k", "arch": "toy", "grid": {**grid, "activation": ["gelu"]}},
                  check_storage=False)


def test_an_mlp_point_id_is_pinned():
    """The id of an existing MLP point, computed by the code before the registries (main at 86ff949): registering
    activations and architectures must not change a stored id."""
    from reconent.sweep.spec import load_spec, point_id

    p = load_spec({"name": "pin", "dataset": "mnist5k", "grid": {"sigma_w2": [1.76], "depth": [10]}}).points()[0]
    assert point_id(p) == "77e8cb0c45e6cff8"
