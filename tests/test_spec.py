"""Sweep specs: every bad spec is one SpecError naming its field and writes nothing; points and ids are stable."""
from __future__ import annotations

import copy
import re
import math
from pathlib import Path

import pytest
import yaml

from reconent.sweep import spec as S
from reconent.sweep import columns
from reconent.sweep.spec import SpecError, load_spec, point_id

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def base(tmp_path):
    return {"name": "t", "dataset": "mnist5k", "storage": str(tmp_path / "store"),
            "grid": {"sigma_w2": [0.5, 1.0, 2.0], "depth": [2, 4]}}


def _with(d: dict, dotted: str, value) -> dict:
    d = copy.deepcopy(d)
    *head, last = dotted.split(".")
    node = d
    for k in head:
        node = node.setdefault(k, {})
    node[last] = value
    return d


BAD = [  # (key to set, value, field path the error must name, a word of the message)
    ("colour", "red", "colour", "unknown key"),
    ("grid.widht", [10], "grid.widht", "unknown key"),
    ("probe.epoch", 2, "probe.epoch", "allowed: enabled, steps, epochs"),
    ("grid.depth", [], "grid.depth", "empty axis"),
    ("grid.sigma_w2", [1.0, -0.5], "grid.sigma_w2[1]", ">= 0"),
    ("grid.sigma_b2", [float("nan")], "grid.sigma_b2[0]", "finite"),
    ("grid.depth", [2, 5, 0], "grid.depth[2]", "depth must be >= 1, got 0"),
    ("grid.depth", {"start": 0, "stop": 4, "num": 3}, "grid.depth", "depth must be >= 1"),
    ("grid.depth", {"start": 1, "stop": 4, "num": 0}, "grid.depth.num", "greater than or equal to 1"),
    ("grid.sigma_w2", {"start": 1, "stop": 2, "num": 3, "step": 1}, "grid.sigma_w2.step", "allowed: start, stop"),
    ("grid.sigma_w2", {"start": 0, "stop": 2, "num": 3, "log": True}, "grid.sigma_w2", "log range"),
    ("grid.sigma_w2", 1.0, "grid.sigma_w2", "list"),
    ("grid.depth", [2, "deep"], "grid.depth[1]", "integer"),
    ("grid.seed", [-1], "grid.seed[0]", ">= 0"),
    ("grid.sigma_w2", [1.0, 1.0], "grid.sigma_w2[1]", "duplicate"),
    ("grid.activation", ["gelu"], "grid.activation[0]", "allowed: tanh, relu"),
    ("grid.activation", {"start": 0, "stop": 1, "num": 2}, "grid.activation", "give a list"),
    ("grid.channels", [8], "grid.channels", "grid.width"),
    ("dataset", "imagenet", "dataset", "allowed: mnist5k"),
    ("arch", "vgg", "arch", "allowed: cnn, mlp"),
    ("grid.arch", ["mlp", "transformer"], "grid.arch[1]", "allowed: cnn, mlp"),
    ("name", "my sweep", "name", "letters"),
    ("probe.rtol", 1.5, "probe.rtol", "less than 1"),
    ("probe.eval_samples", 1, "probe.eval_samples", "greater than or equal to 2"),
    ("train.points", "some", "train.points", "'none' or 'all'"),
    ("train.points", {"every": 2}, "train.points.every", "stride"),
    ("train.points", {"stride": {"width": 2}}, "train.points.stride.width", "not an axis of the grid"),
    ("train.points", {"stride": {"depth": 0}}, "train.points.stride.depth", "greater than or equal to 1"),
    ("train.points", {"subset": [{"sigma_w2": 1.0, "depth": 3}]}, "train.points.subset[0].depth", "not on the grid"),
    ("train.points", {"subset": [{"sigma_w2": 1.0, "seed": 0, "width": 8}]}, "train.points.subset[0].width",
     "not an axis"),
    ("train.accuracy_on", "val", "train.accuracy_on", "'test' or 'train'"),
    ("train.threshold", 1.5, "train.threshold", "less than or equal to 1"),
    ("resources.cpu", 0, "resources.cpu", "greater than 0"),
    ("resources.gpu", -1, "resources.gpu", "greater than or equal to 0"),
    ("resources.gpu", 1.5, "resources.gpu", "fraction"),
    ("device", "tpu", "device", "'auto', 'cpu' or 'cuda'"),
    ("device", "cuda", "device", "resources.gpu > 0"),
    ("storage", "ftp://host/x", "storage", "s3://"),
    ("max_failures", -2, "max_failures", "greater than or equal to -1"),
]


@pytest.mark.parametrize("key,value,field,words", BAD, ids=[f"{b[0]}={b[1]}" for b in BAD])
def test_bad_spec_names_the_field_and_writes_nothing(base, tmp_path, key, value, field, words):
    with pytest.raises(SpecError) as e:
        load_spec(_with(base, key, value))
    assert e.value.field == field, str(e.value)
    msg = str(e.value)
    assert msg.startswith(f"{field}: ") and words in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []  # the storage was not created


def test_missing_field_and_no_points(base):
    with pytest.raises(SpecError, match=r"^grid: required field is missing"):
        load_spec({k: v for k, v in base.items() if k != "grid"})
    with pytest.raises(SpecError, match=r"^grid.depth: required"):
        load_spec(_with(base, "grid", {"sigma_w2": [1.0]}))
    with pytest.raises(SpecError, match="no points"):
        load_spec(_with(base, "probe.enabled", False))
    assert len(load_spec(_with(_with(base, "probe.enabled", False), "train.points", "all")).points()) == 6


def test_arch_given_twice_is_an_error(base):
    with pytest.raises(SpecError, match=r"^arch: give either"):
        load_spec(_with(_with(base, "arch", "mlp"), "grid.arch", ["mlp", "cnn"]))


def test_yaml_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: t\ndataset: mnist5k\ngrid:\n  depth: [1, 2\n  sigma_w2: [1.0]\n")
    with pytest.raises(SpecError) as e:
        load_spec(p)
    assert str(e.value).startswith(f"{p}:5:") and "malformed YAML" in str(e.value)
    p.write_text("name: t\ndataset: mnist5k\ngrid: {depth: [1], sigma_w2: [1.0]}\ndataset: mnist\n")
    with pytest.raises(SpecError, match=r":4:\d+: malformed YAML: .*duplicate key 'dataset'"):
        load_spec(p)
    p.write_text("")
    with pytest.raises(SpecError, match="empty file"):
        load_spec(p)
    with pytest.raises(SpecError, match=r"nope.yaml: no such file"):
        load_spec(tmp_path / "nope.yaml")
    # The field errors of a file carry its name in front of the field path.
    p.write_text(f"name: t\ndataset: mnist5k\nstorage: {tmp_path / 's'}\ngrid: {{depth: [0], sigma_w2: [1.0]}}\n")
    with pytest.raises(SpecError) as e:
        load_spec(p)
    assert e.value.field == "grid.depth[0]" and str(e.value).startswith(f"{p}: grid.depth[0]: depth must be >= 1")


def test_yaml_reads_exponent_floats(tmp_path):
    p = tmp_path / "s.yaml"  # PyYAML alone reads 1e-3 as the string '1e-3'
    p.write_text(f"name: t\ndataset: mnist5k\nstorage: {tmp_path}\ngrid: {{depth: [1], sigma_w2: [1.0]}}\n"
                 "probe: {lr: 1e-3}\n")
    assert load_spec(p).probe.lr == 0.001


def test_storage_checks_write_nothing(base, tmp_path, monkeypatch):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(SpecError, match=r"^storage: .*not a directory"):
        load_spec(_with(base, "storage", str(blocker / "results")), check_storage=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    # An s3 URI that cannot work fails fast and names the storage (no network needed).
    with pytest.raises(SpecError, match=r"^storage: cannot reach 's3://bucket/x\?bogus=1'"):
        load_spec(_with(base, "storage", "s3://bucket/x?bogus=1"), check_storage=True)
    # A reachable bucket (a stand-in filesystem) passes.
    import pyarrow.fs as pafs

    class FakeFS:
        @staticmethod
        def from_uri(uri):
            return pafs.LocalFileSystem(), str(tmp_path)

    with monkeypatch.context() as m:
        m.setattr(pafs, "FileSystem", FakeFS)
        assert load_spec(_with(base, "storage", "gs://bucket/reconent"), check_storage=True).storage == "gs://bucket/reconent"
    # An endpoint that refuses connections is a SpecError on storage (pyarrow's timeouts bound the wait),
    # also when it comes from AWS_ENDPOINT_URL; without check_storage (the default: validation does no I/O)
    # nothing is contacted.
    monkeypatch.setattr(S.storage, "STORAGE_TIMEOUT", 2.0)
    dead = "s3://bucket/x?endpoint_override=127.0.0.1:1&scheme=http"
    with pytest.raises(SpecError, match=r"^storage: cannot reach 's3://bucket/x\?endpoint_override=127.0.0.1:1"):
        load_spec(_with(base, "storage", dead), check_storage=True)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    with pytest.raises(SpecError, match=r"^storage: cannot reach 's3://bucket/x': .*127.0.0.1"):
        load_spec(_with(base, "storage", "s3://bucket/x"), check_storage=True)
    assert load_spec(_with(base, "storage", dead)).storage == dead
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_remote_filesystems_get_timeouts(monkeypatch):
    """store.filesystem keeps the URI's and the environment's options and adds pyarrow's own timeouts."""
    import pyarrow.fs as pafs

    from reconent.sweep.store import filesystem

    opts = lambda fs: fs.__reduce__()[1][0]  # noqa: E731 -- the options pickling keeps
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    fs, path = filesystem("s3://bucket/x?endpoint_override=127.0.0.1:9000&scheme=http&region=eu-west-1", timeout=7)
    o = opts(fs)
    assert isinstance(fs, pafs.S3FileSystem) and path == "bucket/x"
    assert (o["endpoint_override"], o["scheme"], o["region"]) == ("127.0.0.1:9000", "http", "eu-west-1")
    assert o["connect_timeout"] == o["request_timeout"] == 7
    assert opts(filesystem("s3://bucket/x?endpoint_override=h:1")[0])["connect_timeout"] == -1  # pyarrow's default
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    assert opts(filesystem("s3://bucket/x", timeout=3)[0])["endpoint_override"] == "http://127.0.0.1:1"
    fs, path = filesystem("gs://bucket/y?endpoint_override=127.0.0.1:1&scheme=http", timeout=4)
    assert isinstance(fs, pafs.GcsFileSystem) and path == "bucket/y"
    assert opts(fs)["retry_time_limit"].total_seconds() == 4 and opts(fs)["endpoint_override"] == "127.0.0.1:1"


def test_storage_override(base, tmp_path):
    s = load_spec(base, storage_override=str(tmp_path / "other"))
    assert s.storage == str(tmp_path / "other")
    with pytest.raises(SpecError, match="^storage:"):
        load_spec(base, storage_override="ftp://x")


def test_ranges_expand():
    ax = S.Grid(sigma_w2={"start": 0.1, "stop": 6.0, "num": 60}, depth={"start": 1, "stop": 4, "num": 7},
                seed={"start": 1, "stop": 1000, "num": 4, "log": True})._values
    assert len(ax["sigma_w2"]) == 60 and ax["sigma_w2"][0] == 0.1 and ax["sigma_w2"][-1] == 6.0
    assert 1.7 in ax["sigma_w2"] and 1.8 in ax["sigma_w2"]  # rounded: 0.1 + 16 * step == 1.7 exactly
    assert ax["depth"] == [1, 2, 3, 4]  # int ranges round and drop repeats
    assert ax["seed"] == [1, 10, 100, 1000]
    log = S.Grid(sigma_w2={"start": 0.1, "stop": 10, "num": 3, "log": True}, depth=[1])._values["sigma_w2"]
    assert log == [0.1, 1.0, 10.0]


def test_points_cover_the_grid(base):
    d = _with(_with(base, "grid.seed", [0, 1]), "grid.activation", ["tanh", "relu"])
    s = load_spec(_with(d, "train.points", "all"))
    pts = s.points()
    n = 3 * 2 * 2 * 2
    assert len(pts) == 2 * n and [p["kind"] for p in pts] == ["probe"] * n + ["train"] * n
    assert len({point_id(p) for p in pts}) == len(pts)
    assert pts == s.points()  # deterministic
    assert list(pts[0]) == columns.point_keys("probe") and list(pts[-1]) == columns.point_keys("train")
    p = pts[0]
    assert p["rtol"] == 0.005 and p["eval_samples"] == 500 and p["width"] is None and p["channels"] is None
    assert isinstance(p["sigma_w2"], float) and isinstance(p["depth"], int) and isinstance(p["lr"], float)
    assert pts[-1]["accuracy_on"] == "test" and pts[-1]["threshold"] == 0.8


def test_probe_depths_deepest_keeps_only_the_deepest_probes_with_the_same_ids(base):
    every = load_spec(_with(base, "train.points", "all"))
    deep = load_spec(_with(_with(base, "train.points", "all"), "probe.depths", "deepest"))
    probes = lambda s: {point_id(p): p for p in s.points() if p["kind"] == "probe"}  # noqa: E731
    assert {p["depth"] for p in probes(deep).values()} == {4} and len(probes(deep)) == 3
    assert set(probes(deep)) < set(probes(every))  # switching modes recomputes nothing
    train = lambda s: [p for p in s.points() if p["kind"] == "train"]  # noqa: E731
    assert train(deep) == train(every)  # ground truth still covers every depth
    with pytest.raises(SpecError, match="probe.depths"):
        load_spec(_with(base, "probe.depths", "some"))


def test_white_noise_trains_on_train_accuracy(base):
    s = load_spec(_with(_with(base, "dataset", "white_noise"), "train.points", "all"))
    assert {p["accuracy_on"] for p in s.points() if p["kind"] == "train"} == {"train"}


def test_train_selection_stride_and_subset(base):
    d = _with(base, "grid", {"sigma_w2": [0.5, 1.0, 2.0, 3.0], "depth": [2, 4, 6], "seed": [0, 1]})
    train = lambda s: [(p["sigma_w2"], p["depth"], p["seed"]) for p in s.points() if p["kind"] == "train"]  # noqa
    got = train(load_spec(_with(d, "train.points", {"stride": {"sigma_w2": 2, "depth": 2}})))
    assert got == [(sw, dp, sd) for sd in (0, 1) for sw in (0.5, 2.0) for dp in (2, 6)]
    sub = {"subset": [{"sigma_w2": 1.0000000000001, "depth": 4}, {"sigma_w2": 3.0, "depth": 6, "seed": 1}]}
    assert sorted(train(load_spec(_with(d, "train.points", sub)))) == [(1.0, 4, 0), (1.0, 4, 1), (3.0, 6, 1)]


def test_mixed_archs_size_each_arch_by_its_own_axis(base):
    d = _with(_with(base, "grid.arch", ["mlp", "cnn"]), "grid.width", [64, 128])
    s = load_spec(_with(d, "grid.channels", [8]))
    pts = s.points()
    mlp = [p for p in pts if p["arch"] == "mlp"]
    cnn = [p for p in pts if p["arch"] == "cnn"]
    assert len(mlp) == 3 * 2 * 2 and {(p["width"], p["channels"]) for p in mlp} == {(64, None), (128, None)}
    assert len(cnn) == 3 * 2 and {(p["width"], p["channels"]) for p in cnn} == {(None, 8)}
    assert {p["rtol"] for p in cnn} == {0.01}
    with pytest.raises(SpecError, match="^grid.width: width sizes the mlp"):
        load_spec(_with(_with(base, "arch", "cnn"), "grid.width", [64]))


def test_point_id_is_stable_and_ignores_the_sweep_name(base):
    s = load_spec(base)
    p = s.points()[0]
    assert point_id(p) == point_id({**p, "sweep": "renamed"})
    # Training ids are as before the redesign (computed with the pre-redesign code); probe ids lost `rtol` in
    # schema v2 (store.migrate renames stored v1 parts), and settings added later are neutral at their default.
    qs = load_spec(Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml", check_storage=False).points()
    # (the quickstart's last training point as it was before its budget became 15 epochs at threshold 0.8)
    old_budget = {"epochs": 3, "threshold": 0.6}
    assert point_id({**qs[-1], **old_budget}) == "777fdbb7cfa5605e" and qs[-1]["kind"] == "train"
    assert point_id(qs[-1]) != "777fdbb7cfa5605e"  # a training budget is part of the point
    assert [point_id(q) for q in s.points()] == [point_id(q) for q in load_spec(_with(base, "name", "x")).points()]
    # A golden value: changing how ids are computed would orphan every stored result.
    golden = {"sweep": "any", "kind": "probe", "dataset": "mnist5k", "arch": "mlp", "activation": "tanh",
              "width": None, "channels": None, "depth": 10, "sigma_w2": 1.76, "sigma_b2": 0.05, "seed": 0,
              "epochs": 1, "batch_size": 64, "lr": 0.001, "rtol": 0.005, "train_samples": None, "eval_samples": 500}
    assert columns.point_id_v1(golden) == "923553ac3122cd2b"  # the schema-1 id of this point
    assert point_id(golden) == "8801085213c479a5" == point_id({**golden, "rtol": 0.01})  # rtol is analysis only
    neutral = {"eval_depths": "all", "entropy_dtype": "float64", "tf32": False}
    assert point_id({**golden, **neutral}) == point_id(golden)
    # schema 3: a budget given as `epochs` (steps null) keeps its id whatever the checkpoints; a budget in steps
    # is another point, even where it means the same number of steps
    assert point_id({**golden, **neutral, "steps": None, "checkpoints": "auto"}) == point_id(golden)
    assert point_id({**golden, "checkpoints": "none"}) == point_id({**golden, "checkpoints": "10,63"})
    assert point_id({**golden, "epochs": None, "steps": 63}) != point_id(golden)
    assert point_id({**golden, "sigma_w2": 1.7600000001}) != point_id(golden)


def test_changed_spec_adds_points_and_keeps_old_ids(base):
    old = load_spec(_with(base, "grid.sigma_w2", {"start": 0.0, "stop": 2.0, "num": 5}))
    new = load_spec(_with(_with(base, "grid.sigma_w2", {"start": 0.0, "stop": 2.0, "num": 9}), "grid.depth", [2, 4, 8]))
    old_ids, new_ids = {point_id(p) for p in old.points()}, {point_id(p) for p in new.points()}
    assert old_ids < new_ids and len(new_ids - old_ids) == 9 * 3 - 5 * 2
    # the same values written as a list give the same points as the range
    as_list = load_spec(_with(base, "grid.sigma_w2", [0.0, 0.5, 1.0, 1.5, 2.0]))
    assert {point_id(p) for p in as_list.points()} == old_ids


def test_resolved_is_explicit_and_loads_again(base):
    s = load_spec(_with(_with(base, "grid.depth", {"start": 2, "stop": 8, "num": 4}), "train.points",
                        {"stride": {"depth": 2}}))
    r = s.resolved()
    assert r["grid"]["depth"] == [2, 4, 6, 8] and r["grid"]["seed"] == [0] and r["probe"]["rtol"] == 0.005
    assert r["reconent_version"] == __import__("reconent").__version__ and r["n_points"] == {"probe": 12, "train": 6}
    assert r["spec_hash"] == s.spec_hash and len(s.spec_hash) == 16
    again = load_spec(yaml.safe_load(yaml.safe_dump(r)))
    assert again.points() == s.points() and again.spec_hash == s.spec_hash
    # The hash ignores where results go, and follows what is computed.
    assert load_spec(base, storage_override=str(Path(base["storage"]) / "x")).spec_hash == load_spec(base).spec_hash
    assert load_spec(_with(base, "probe.epochs", 2)).spec_hash != load_spec(base).spec_hash


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_sweeps_validate(path, tmp_path):
    s = load_spec(path, storage_override=str(tmp_path / "results"))
    pts = s.points()
    assert pts and len({point_id(p) for p in pts}) == len(pts)
    assert s.name == path.stem  # results land under <storage>/<file name>
    assert list(tmp_path.iterdir()) == []


def test_quickstart_is_small_and_has_ground_truth(tmp_path):
    s = load_spec(ROOT / "sweeps" / "quickstart.yaml", storage_override=str(tmp_path))
    kinds = [p["kind"] for p in s.points()]
    assert s.dataset == "mnist5k" and s.resources.gpu == 0
    assert 0 < kinds.count("train") <= 8 and kinds.count("probe") <= 32
    assert max(p["depth"] for p in s.points()) <= 25
    # its budgets, stated in the spec: the default 938 decoder steps, at most 15 training epochs
    assert {p["steps"] for p in s.points() if p["kind"] == "probe"} == {938}
    assert max(p["epochs"] for p in s.points() if p["kind"] == "train") <= 15


def test_paper_specs_are_paper_scale(tmp_path):
    s = load_spec(ROOT / "sweeps" / "mlp_mnist.yaml", storage_override=str(tmp_path))
    sw = s.axes()["sigma_w2"]
    assert math.isclose(min(sw), 0.1) and math.isclose(max(sw), 6.0) and max(s.axes()["depth"]) == 200
    assert s.train.threshold == 0.8 and s.train.epochs == 1 and s.resources.gpu == 0.25
    c = load_spec(ROOT / "sweeps" / "mlp_cifar10_gray.yaml", storage_override=str(tmp_path))
    assert c.dataset == "cifar10_gray" and c.train.threshold == 0.4 and c.train.epochs == 200
    w = load_spec(ROOT / "sweeps" / "white_noise.yaml", storage_override=str(tmp_path))
    assert w.accuracy_on == "train" and w.train.train_samples


def test_validating_a_spec_needs_neither_torch_nor_ray():
    """A fresh interpreter: load, validate and expand a spec, then check what got imported."""
    import subprocess
    import sys

    code = ("import sys; from reconent.sweep.spec import load_spec; "
            "load_spec('sweeps/quickstart.yaml', check_storage=False).points(); "
            "print(sorted(m for m in ('torch', 'ray', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"imported: {out.stdout.strip()}"


ODD_KEYS = {  # (YAML after a valid head, line:column of the bad key, words of the message)
    "duplicate": ("grid: {depth: [2], sigma_w2: [1.0]}\ndataset: mnist\n", "5:1", "duplicate key 'dataset'"),
    "list_key": ("grid:\n  depth: [2]\n  ? [sigma_w2, sigma_b2]\n  : [1.0]\n", "6:5",
                 "the key '[sigma_w2, sigma_b2]' is a list"),
    "flow_list_key": ("grid: {depth: [2], [1, 2]: x}\n", "4:20", "the key '[1, 2]' is a list"),
    "mapping_key": ("grid: {depth: [2], sigma_w2: [1.0]}\n? {a: 1}\n: 2\n", "5:3", "the key '{a: 1}' is a mapping"),
    "number_key": ("grid: {depth: [2], sigma_w2: [1.0], 1: 2}\n", "4:37", "the key '1' is not a name"),
}


def _odd_spec(tmp_path, case) -> tuple[Path, Path]:
    text, _, _ = ODD_KEYS[case]
    store = tmp_path / "store"
    p = tmp_path / "odd.yaml"
    p.write_text(f"name: t\ndataset: mnist5k\nstorage: {store}\n{text}")
    return p, store


@pytest.mark.parametrize("case", sorted(ODD_KEYS))
def test_yaml_duplicate_and_odd_keys_are_spec_errors(tmp_path, case):
    p, store = _odd_spec(tmp_path, case)
    _, where, words = ODD_KEYS[case]
    with pytest.raises(SpecError) as e:
        load_spec(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:{where}: malformed YAML: {words}") and "\n" not in msg, msg
    assert "a key is a name" in msg or "give each key once" in msg  # the fix
    assert not store.exists()


@pytest.mark.parametrize("case", ["duplicate", "list_key", "mapping_key"])
def test_cli_odd_keys_exit_2_and_write_nothing(tmp_path, capsys, case):
    from reconent.cli import main

    p, store = _odd_spec(tmp_path, case)
    assert main(["sweep", "run", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"reconent: error: {p}:{ODD_KEYS[case][1]}:") and err.count("\n") == 1, err
    assert not store.exists() and sorted(x.name for x in tmp_path.iterdir()) == ["odd.yaml"]


def test_yaml_merge_keys_still_work(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text(f"name: t\ndataset: mnist5k\nstorage: {tmp_path / 's'}\n"
                 "grid: &g {depth: [2], sigma_w2: [1.0]}\nprobe: {lr: 1e-3}\n")
    assert load_spec(p).grid.depth == [2]
    y = "a: &x {b: 1, c: 2}\nd:\n  <<: *x\n  c: 3\n"
    assert yaml.load(y, Loader=S._Loader) == {"a": {"b": 1, "c": 2}, "d": {"b": 1, "c": 3}}


# ---------------------------------------------------------------- the decoder budget (schema 3)
def test_probe_budget_defaults_to_938_steps_and_epochs_stays_as_it_was(base):
    from reconent.science.budget import DEFAULT_STEPS

    pts = [p for p in load_spec(base).points() if p["kind"] == "probe"]
    assert DEFAULT_STEPS == 938 and {(p["steps"], p["epochs"], p["checkpoints"]) for p in pts} == {(938, None, "auto")}
    one = [p for p in load_spec(_with(base, "probe.epochs", 1)).points() if p["kind"] == "probe"]
    assert {(p["steps"], p["epochs"]) for p in one} == {(None, 1)}
    assert not {point_id(p) for p in pts} & {point_id(p) for p in one}  # never the same point
    # the resolved spec states the budget, and runs again as the same points
    s = load_spec(base)
    r = s.resolved()
    assert r["probe"]["steps"] == 938 and "epochs" not in r["probe"]
    assert [point_id(p) for p in load_spec(r).points()] == [point_id(p) for p in s.points()]
    r1 = load_spec(_with(base, "probe.epochs", 1)).resolved()
    assert r1["probe"]["epochs"] == 1 and "steps" not in r1["probe"]


@pytest.mark.parametrize("probe, field, match", [
    ({"steps": 100, "epochs": 1}, "probe.steps", "give the decoder budget once"),
    ({"steps": 0}, "probe.steps", "greater than or equal to 1"),
    ({"steps": 100, "checkpoints": "10,200"}, "probe.checkpoints", r"must lie in 1\.\.100"),
    ({"checkpoints": "often"}, "probe.checkpoints", "'auto', 'none' or steps"),
    ({"checkpoints": [0, 5]}, "probe.checkpoints", "must lie in"),
])
def test_bad_probe_budgets_name_their_field(base, probe, field, match):
    with pytest.raises(SpecError) as e:
        load_spec({**base, "probe": probe})
    assert e.value.field == field and re.search(match, e.value.msg), str(e.value)


def test_checkpoints_are_stored_as_one_string(base):
    pts = load_spec({**base, "probe": {"steps": 400, "checkpoints": [300, 25, 100]}}).points()
    assert {p["checkpoints"] for p in pts if p["kind"] == "probe"} == {"25,100,300"}
    assert {p["checkpoints"] for p in load_spec({**base, "probe": {"checkpoints": "None"}}).points()
            if p["kind"] == "probe"} == {"none"}
