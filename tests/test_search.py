"""Search strategies (reconent.sweep.search): the lazy grid feed, the Optuna boundary search, resume."""
from __future__ import annotations

import copy
import json
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import wait_for
from reconent.cli import main
from reconent.sweep.columns import point_id
from reconent.sweep.search.boundary import BoundarySearch, BoundaryStrategy, Prior
from reconent.sweep.search.feed import StrategySearcher
from reconent.sweep.search.grid import GridStrategy
from reconent.sweep.search.oracle import Oracle
from reconent.sweep.spec import load_spec
from reconent.sweep.store import Store

TINY_TRAIN = {"epochs": 1, "threshold": 0.3, "lr": 0.05, "batch_size": 32, "train_samples": 256}


def spec_dict(name, storage, boundary=None, **top):
    d = {"name": name, "dataset": "mnist5k", "arch": "mlp", "storage": str(storage), "device": "cpu",
         "resources": {"cpu": 1, "gpu": 0}, "grid": {"sigma_w2": [0.3, 1.76], "depth": [12], "width": [16]},
         "probe": {"enabled": False},
         "train": {"points": {"boundary": boundary or {"budget": 8, "depth": {"min": 1, "max": 12}}}, **TINY_TRAIN}}
    d.update(top)
    return d


# ---------------------------------------------------------------- the grid feed
def test_grid_feed_hands_tune_one_point_per_trial(monkeypatch):
    """Through Tune's own SearchGenerator: what Tune deep-copies per trial is the small param space plus one
    point, never the list (tune.grid_search(points) copied the whole list per variant: O(N²))."""
    from ray.tune.experiment import Experiment
    from ray.tune.search import SearchGenerator

    from reconent.sweep.trainables import noop_trainable

    n = 3000
    points = [{"i": i, "pad": list(range(20))} for i in range(n)]
    exp = Experiment("grid", noop_trainable, config={"ctx": {"sweep": "s"}}, num_samples=-1)
    exp.spec["num_samples"] = sys.maxsize  # what tune.run makes of num_samples=-1
    gen = SearchGenerator(StrategySearcher(GridStrategy(points), max_concurrent=None))
    gen.add_configurations([exp])
    copied, real = [], copy.deepcopy

    def counting(x, memo=None, _nil=[]):  # noqa: B006 -- copy.deepcopy's own signature
        copied.append(len(repr(x)))
        return real(x, memo, _nil)

    monkeypatch.setattr(copy, "deepcopy", counting)
    trials = []
    while (t := gen.next_trial()) is not None:
        trials.append(t)
    assert [t.config["point"]["i"] for t in trials] == list(range(n))  # every point once, in order
    assert all(set(t.config) == {"ctx", "point"} for t in trials)
    one = len(repr(points[0])) + len(repr(exp.spec))
    assert len(copied) <= 4 * n  # a few copies per trial ...
    assert max(copied) <= 2 * one  # ... each of one trial's worth, whatever n is
    assert not gen.is_finished()  # trials in flight: the searcher waits for them
    for t in trials:
        gen.on_trial_complete(t.trial_id, {"final": True})
    assert gen.next_trial() is None and gen.is_finished()


class Recorder:
    name = "rec"

    def __init__(self, n):
        self.asked, self.left, self.seen = [], n, []

    def propose(self, k):
        self.asked.append(k)
        take = min(k, self.left)
        self.left -= take
        return [{"j": self.left + i} for i in range(take)]

    def observe(self, point, result):
        self.seen.append((point["j"], result))

    def finished(self):
        return self.left == 0


def test_searcher_asks_for_the_free_slots_at_once():
    rec = Recorder(10)
    s = StrategySearcher(rec, max_concurrent=4)
    got = [s.suggest(f"t{i}") for i in range(6)]
    assert rec.asked == [4] and [g is not None for g in got] == [True] * 4 + [False] * 2  # full: wait
    s.on_trial_complete("t0", {"status": "ok"})
    s.on_trial_complete("t1", None, error=True)
    assert s.suggest("t6") is not None and rec.asked == [4, 2]  # two slots freed: a batch of two
    assert rec.seen[1][1] is None  # a lost trial is observed without a result


# ---------------------------------------------------------------- the boundary search
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boundary_search_finds_the_oracle_boundary_within_budget(seed):
    oracle = Oracle(np.linspace(0.1, 6, 20), seed=seed)
    priors = [Prior(oracle.prediction(c), oracle.prediction(c) >= 200) for c in range(20)]
    search = BoundarySearch(20, 1, 200, budget=100, resolution=2, priors=priors)
    while batch := search.ask(4):
        assert len(batch) <= 4
        for number, c, d, s in batch:
            search.tell(number, oracle.label(c, d, s))
    err = np.abs([e["median"] for e in search.estimates()] - oracle.L)
    assert search.used() <= 100
    assert np.median(err) <= 2 and err.max() <= 5, err
    trials = search.study.get_trials()
    assert len({(t.params["column"], t.params["depth"]) for t in trials}) == len(trials)  # nothing twice


def test_boundary_search_without_probes_still_brackets():
    oracle = Oracle(np.linspace(0.3, 4, 5), cap=60, seed=3)
    search = BoundarySearch(5, 1, 60, budget=60, resolution=2)
    while batch := search.ask(2):
        for number, c, d, s in batch:
            search.tell(number, oracle.label(c, d, s))
    est = search.estimates()
    assert all(abs(e["median"] - L) <= 5 for e, L in zip(est, oracle.L)), (est, oracle.L)
    assert all(e["lo"] <= e["median"] <= e["hi"] for e in est)


def _fill(store, strat, oracle, proposals):
    for p in proposals:
        c, d, s = strat.where[point_id(p)]
        store.write_part("train", {**p, "point_id": point_id(p), "status": "ok", "reached": oracle.label(c, d, s)})


def test_rebuilt_from_the_parts_same_proposals_and_no_retraining(tmp_path):
    spec = load_spec(spec_dict("r", tmp_path, {"budget": 16, "depth": {"min": 1, "max": 40}}))
    store = Store(str(tmp_path), "r")
    oracle = Oracle([0.3, 1.76], cap=40, seed=0)
    a = BoundaryStrategy(spec, store)
    first = a.propose(2)
    _fill(store, a, oracle, first)  # two points finished; a crash now loses nothing stored
    b, c = BoundaryStrategy(spec, store), BoundaryStrategy(spec, store)
    assert b.stored == 2 and b.search.used() == 2
    nb, nc = b.propose(3), c.propose(3)
    assert nb == nc  # same spec + same parts -> same next proposals
    assert not {point_id(p) for p in nb} & {point_id(p) for p in first}  # a stored point is not proposed again
    # a science error stores a part too: it gives no label, but it is not proposed again either
    bad = nb[0]
    store.write_part("train", {**bad, "point_id": point_id(bad), "status": "error", "error": "boom"})
    d = BoundaryStrategy(spec, store)
    assert d.stored == 3 and point_id(bad) not in {point_id(p) for p in d.propose(4)}
    # --retry-errors: the error is no result to the search, so its point may be proposed (and computed) again
    e = BoundaryStrategy(spec, store, retry_errors=True)
    assert e.stored == 2 and e.search.used() == 2
    again = {point_id(p) for p in e.propose(16)}
    assert point_id(bad) in again and not again & {point_id(p) for p in first}


def test_stopped_early_verdicts_are_reused_on_a_rebuild(tmp_path):
    """Rows the stop rule ended are verdicts at their budget: a rebuilt search labels them untrainable, never
    proposes them again, and its cost model learns from their epochs that an untrainable run is cheap."""
    spec = load_spec(spec_dict("s", tmp_path, {"budget": 16, "depth": {"min": 1, "max": 40}},
                               train={"points": {"boundary": {"budget": 16, "depth": {"min": 1, "max": 40}}},
                                      **TINY_TRAIN, "epochs": 20, "stop": "extrapolate"}))
    store = Store(str(tmp_path), "s")
    a = BoundaryStrategy(spec, store)
    first = a.propose(4)
    assert all(p["stop"] == "extrapolate" and p["epochs"] == 20 for p in first)
    for p in first:  # every one stopped early after 5 of its 20 epochs
        store.write_part("train", {**p, "point_id": point_id(p), "status": "ok", "reached": False, "stopped_early": True,
                                   "epochs_run": 5, "seconds": 3.0})
    b = BoundaryStrategy(spec, store)
    assert b.stored == 4
    assert sorted(t.value for t in b.search.study.get_trials()) == [0.0] * 4  # untrainable, at their budget
    assert not {point_id(p) for p in b.propose(4)} & {point_id(p) for p in first}
    assert b.search.costs().fractions()["untrainable"] == pytest.approx((1 + 4 * 0.25) / 5)


@pytest.mark.parametrize("boundary, field", [
    ({"budget": 8}, "train.points.boundary.depth"),
    ({"budget": 1, "depth": {"min": 1, "max": 12}}, "train.points.boundary.budget"),
    ({"budget": 1000, "depth": {"min": 1, "max": 12}}, "train.points.boundary.budget"),
    ({"budget": 8, "depth": {"min": 9, "max": 3}}, "train.points.boundary.depth.max"),
    ({"budget": 8, "depth": {"min": 0, "max": 3}}, "train.points.boundary.depth.min"),
    ({"budget": 8, "depth": {"min": 1, "max": 3}, "confidence": 1.5}, "train.points.boundary.confidence"),
    ({"budget": 8, "depth": {"min": 1, "max": 3}, "budgett": 3}, "train.points.boundary.budgett"),
])
def test_bad_search_settings_exit_2_and_write_nothing(tmp_path, capsys, boundary, field):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec_dict("bad", tmp_path / "store", boundary)))
    assert main(["sweep", "run", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reconent: error:") and f"{field}:" in err[0], err
    assert not (tmp_path / "store").exists()


def test_bench_search_prints_the_figures(capsys):
    """Training-seconds beside trainings and errors: the default search (information per √second) against the grid
    at the same budget and stop rule, and the search by information per training (--cost-power 0)."""
    assert main(["bench", "search", "--seeds", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["grid_trainings"] == 400 and out["trainings"] <= 100 and out["cost_power"] == 0.5 and out["stop"]
    assert out["grid_training_seconds"] >= 4 * out["training_seconds"] > 0  # the goal: >= 4x fewer seconds
    assert out["median_boundary_error"] <= 2 and out["max_boundary_error"] <= 8 and out["seconds"] > 0
    assert main(["bench", "search", "--seeds", "1", "--json", "--cost-power", "0"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["median_boundary_error"] <= 2 and plain["max_boundary_error"] <= 5
    assert plain["grid_training_seconds"] == out["grid_training_seconds"]  # the same grid, the same oracle
    assert plain["training_seconds"] > out["training_seconds"]  # counting seconds saves seconds
    assert main(["bench", "search", "--seeds", "1", "--json", "--stop", "none"]) == 0
    nostop = json.loads(capsys.readouterr().out)
    assert nostop["grid_training_seconds"] > out["grid_training_seconds"]  # the rule saves the grid seconds too


def test_bench_search_refuses_a_bad_stop_error(capsys):
    assert main(["bench", "search", "--stop-error", "1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--stop-error" in err[0] and "probability" in err[0], err


# ---------------------------------------------------------------- counting seconds
def _costly_search(priors, archs, power=0.5):
    """A search whose cost model has learned, from two extra columns of stored trainings that all ran their
    whole budget, that an epoch of the cnn costs ten times the mlp's at every depth."""
    n = len(priors)
    s = BoundarySearch(n + 2, 1, 60, budget=200, resolution=1, priors=priors + [Prior(50), Prior(50)],
                       archs=archs + ["mlp", "cnn"], cost_power=power)
    for d, y in ((2, True), (3, True), (4, True), (58, False), (59, False), (60, False)):
        s.add(n, d, 0, y, 1.0 * (1 + d), 1.0)
        s.add(n + 1, d, 0, y, 10.0 * (1 + d), 1.0)
    return s


def test_acquisition_prefers_the_cheaper_point_of_equal_information():
    s = _costly_search([Prior(20), Prior(20)], ["mlp", "cnn"])
    post = s.posteriors()
    gain0, gain1 = s.model.gain(post[0]), s.model.gain(post[1])
    np.testing.assert_allclose(gain0, gain1)  # the same question in both columns ...
    costs = s.costs()
    sec = [costs.expected(a, s.model.depths, s.model.p1, post[c], s.model.L) for c, a in ((0, "mlp"), (1, "cnn"))]
    np.testing.assert_allclose(sec[1], 10 * sec[0], rtol=1e-6)  # ... at ten times the price in the cnn's
    a0, a1 = s.acquisition(0, post[0], costs), s.acquisition(1, post[1], costs)
    assert (a0 > a1).all()
    c, d, _ = s.choose()
    assert c == 0 and abs(d - 20) <= 3  # the cheap column, where its prior straddles
    free = _costly_search([Prior(20), Prior(20)], ["mlp", "cnn"], power=0)
    np.testing.assert_allclose(free.acquisition(0, post[0], None), free.acquisition(1, post[1], None))


def test_acquisition_prefers_the_more_informative_point_of_equal_cost():
    s = _costly_search([Prior(20), Prior(40)], ["mlp", "mlp"])
    post, costs = s.posteriors(), s.costs()
    i = 20 - s.model.dmin  # depth 20: where column 0's prior straddles, deep inside column 1's trainable region
    sec = [costs.expected("mlp", s.model.depths, s.model.p1, p, s.model.L)[i] for p in post[:2]]
    assert sec[0] == pytest.approx(sec[1])  # every stored run took its budget: the label does not change the price
    gain = [s.model.gain(p)[i] for p in post[:2]]
    assert gain[0] > 2 * gain[1]
    assert s.acquisition(0, post[0], costs)[i] > s.acquisition(1, post[1], costs)[i]


def test_the_cost_model_learns_depth_architecture_and_the_labels_epochs():
    from reconent.sweep.search.boundary import CostModel

    m = CostModel()
    for d in (10, 20, 40):
        m.add("mlp", d, seconds=2.0 * d * 0.25, fraction=0.25, label=False)  # stopped at a quarter of the budget
        m.add("mlp", d, seconds=2.0 * d * 0.5 * (d / 40), fraction=0.5 * (d / 40), label=True, closeness=d / 40)
    f = m.fractions()
    assert f["untrainable"] == pytest.approx((1 + 3 * 0.25) / 4)  # shrunk toward a whole budget by one pseudo-row
    assert f["trainable_c"] == pytest.approx(0.5) and f["trainable_k"] == pytest.approx(1.0)
    L = np.array([40.0])
    sure_bad = m.expected("mlp", np.array([20, 40]), np.array([[0.0], [0.0]]), np.array([1.0]), L)
    np.testing.assert_allclose(sure_bad, [40 * f["untrainable"], 80 * f["untrainable"]], rtol=1e-6)
    sure_good = m.expected("mlp", np.array([20]), np.array([[1.0]]), np.array([1.0]), L)
    np.testing.assert_allclose(sure_good, [40 * 0.25], rtol=1e-6)  # half-way to its boundary: a quarter budget
    assert m.expected("cnn", np.array([20]), np.array([[1.0]]), np.array([1.0]), L) == pytest.approx(sure_good)


# ---------------------------------------------------------------- a real sweep, killed mid-search
@pytest.mark.slow
def test_kill_driver_mid_search_then_rerun(tmp_path, procs):
    """SIGKILL the driver mid-search: the rerun trains no stored point again (stopped-early verdicts included),
    every part exists once, and the boundary matches an uninterrupted run within the resolution."""
    from reconent.sweep.run import run

    boundary = {"budget": 8, "depth": {"min": 1, "max": 12}, "resolution": 1}
    # 6 epochs under the stop rule: a run that has not passed by epoch 5 is stopped there (min_epochs; a flat
    # curve's ⌈0.75 · 6⌉ is 5 too)
    train = {"points": {"boundary": boundary}, **TINY_TRAIN, "epochs": 6, "stop": "extrapolate"}
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump(spec_dict("k", tmp_path / "store", boundary, train=train)))
    folder = tmp_path / "store" / "k" / "train"
    driver = procs.start([sys.executable, "-m", "reconent.cli", "sweep", "run", str(path), "--json"], "driver.log")
    wait_for(lambda: len(list(folder.glob("part-*.parquet"))) >= 2 or driver.poll() is not None, 300, "two parts")
    assert driver.poll() is None, f"the search ended before it could be killed:\n{procs.log('driver.log')}"
    from conftest import kill_group

    kill_group(driver)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.glob("part-*.parquet")}
    assert 2 <= len(before) < 8

    code, out = procs.run([sys.executable, "-m", "reconent.cli", "sweep", "run", str(path), "--json"], "rerun.log")
    assert code == 0, out
    s = json.loads(out.strip().splitlines()[-1])["search"]
    assert s["stored_at_start"] == len(before)
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.glob("part-*.parquet")}
    assert {n: after[n] for n in before} == before  # no stored point was trained again
    df = pd.read_parquet(folder)
    assert len(df) == len(after) == s["trainings"] <= 8 and df["point_id"].is_unique
    assert (df["stop"] == "extrapolate").all() and df["stopped_early"].any()  # verdicts the rule decided
    stopped = df[df["stopped_early"]]
    assert (stopped["epochs_run"] == 5).all() and not stopped["reached"].any()

    clean = run(load_spec(spec_dict("k", tmp_path / "clean", boundary, train=train)), progress=False)["search"]
    for a, b in zip(s["columns"], clean["columns"]):
        assert a["sigma_w2"] == b["sigma_w2"] and abs(a["median"] - b["median"]) <= 1, (s, clean)


# ---------------------------------------------------------------- analysis of adaptively chosen depths
def test_analysis_of_adaptive_depths_brackets_models_and_costs(tmp_path):
    """The true boundary comes from whatever depths were trained: bracket, model interval, the cost against a
    grid of the same resolution, and the figure of where training ran (true L*: 11 at σ_w² 1, 30 at 2)."""
    from reconent.analysis import analyse
    from reconent.analysis import synthetic as syn
    from reconent.analysis.figures import search_figure

    probes = pd.DataFrame([syn.probe_row(1.0, 40, 12), syn.probe_row(2.0, 40, 28)])
    depths = {1.0: [12, 6, 9, 11, 10, 13], 2.0: [28, 35, 31, 30, 29]}  # in the order a search would pick them
    start = pd.Timestamp("2024-06-01", tz="UTC")
    rows = []
    for w, ds in depths.items():
        for i, d in enumerate(ds):
            r = syn.train_row(w, d, 0.9 if d <= {1.0: 11, 2.0: 30}[w] else 0.1)
            rows.append({**r, "started_at": start + pd.Timedelta(minutes=len(rows))})
    a = analyse(probes, pd.DataFrame(rows), n_boot=0)
    b = a.boundaries.set_index("sigma_w2")
    assert (b.loc[1.0, "true_lo"], b.loc[1.0, "true_hi"]) == (11, 11)
    assert (b.loc[2.0, "true_lo"], b.loc[2.0, "true_hi"]) == (30, 30)
    for w in (1.0, 2.0):
        assert b.loc[w, "post_lo"] <= b.loc[w, "true_lo"] <= b.loc[w, "post_hi"]
    r = a.resolution.iloc[0]
    assert r["trainings"] == 11 and r["median_bracket"] == 1 and r["depth_range"] == "6 … 35"
    assert r["grid_same_median"] == 2 * 30  # one depth per layer over 6..35 in both columns
    c = a.cost.set_index("scope")
    assert c.loc["points both cover", "compares"].startswith("like with like: the same 11")
    assert search_figure(a, a.groups()[0], tmp_path / "search.png") and (tmp_path / "search.png").stat().st_size > 0
