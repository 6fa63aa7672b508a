"""Deep probes: the evaluation settings (eval_depths, entropy_dtype), their ids, the analysis reading
search profiles, and the bench's deep mode. CPU only; tests/test_cuda.py covers the GPU path."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from reconent.analysis.frames import probe_cutoffs
from reconent.cli import main
from reconent.science import probe as P
from reconent.science.entropy import cutoff_from_normalised
from reconent.science.archs.mlp import mlp
from reconent.sweep import columns

WIDTH = 32


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(5)
    return torch.rand(256, WIDTH, generator=g), torch.rand(60, WIDTH, generator=g)


def deep(data, sigma_w2, depth=40, **kw):
    """One pass (4 steps) unless a budget is given: the evaluation settings do not depend on it."""
    if "steps" not in kw:
        kw.setdefault("epochs", 1)
    x, ev = data
    return P.probe(mlp(depth, WIDTH, WIDTH, "tanh", sigma_w2, 0.05, seed=0), x, ev, **kw)


@pytest.mark.parametrize("sigma_w2", [0.5, 1.2, 1.76, 3.0])
def test_search_finds_the_exhaustive_cutoff_and_the_same_values(data, sigma_w2):
    full, search = deep(data, sigma_w2, eval_depths="all"), deep(data, sigma_w2, eval_depths="search")
    assert full.evaluated.all() and 0 < search.evaluated.sum() < 40
    ev = search.evaluated
    # the same decoders (same seed), the same cascades: equal wherever the search evaluated
    np.testing.assert_allclose(search.relative_entropy[ev], full.relative_entropy[ev], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(search.differential_entropy[ev], full.differential_entropy[ev], rtol=1e-5)
    assert np.isnan(search.relative_entropy[~ev]).all() and search.status == "ok"
    assert search.cutoff() == full.cutoff(), (sigma_w2, search.cutoff(), full.cutoff())
    # the refinement covers the cutoff and its neighbourhood
    c = full.cutoff()
    if 0 < c < 40:
        assert ev[c - 1] and ev[min(c, 39)]


def _replay(profile: np.ndarray, rtol: float = 0.005):
    """Run `search_layers` on a known normalised profile; return (layers evaluated, calls, cutoff found)."""
    L, seen, calls = len(profile), np.full(len(profile), np.nan), []

    def run(depths):
        calls.append(list(depths))
        assert not set(depths) & {l for c in calls[:-1] for l in c}, "a layer evaluated twice"
        seen[np.array(depths) - 1] = profile[np.array(depths) - 1]
        return seen.copy()

    layers = P.search_layers(L, rtol, run)
    return layers, calls, cutoff_from_normalised(seen, rtol, skip_nan=True)


@pytest.mark.parametrize("L", [9, 40, 100, 200])
def test_search_layers_find_every_step_cutoff_with_few_cascades(L):
    assert P.search_strides(200) == [25, 10, 4, 2, 1] and P.search_strides(L)[-1] == 1
    for c in range(0, L):  # off the plateau up to layer c, on it above
        profile = np.where(np.arange(1, L + 1) <= c, 0.9, 1.0)
        layers, calls, found = _replay(profile)
        assert found == c == cutoff_from_normalised(profile, 0.005), (L, c, found)
        assert L in calls[0] and (c == 0 or c in layers) and (c == L or c + 1 in layers)
        cost = sum(layers)  # decoder applications per sample
        assert cost <= {9: 45, 40: 400, 100: 1350, 200: 2900}[L], (L, c, cost)  # exhaustive: L(L+1)/2 = 20,100 at 200


def test_search_layers_find_a_noisy_crossing_within_the_span_and_miss_one_far_above():
    L = 200
    profile = np.where(np.arange(1, L + 1) <= 80, 0.99, 1.0)
    profile[86] = 0.994  # layer 87: off the plateau again, within two strides of layer 80
    assert _replay(profile)[2] == 87
    # an isolated off-plateau layer between two on-plateau layers of the coarsest grid, far above
    # the cutoff, is the one case the search cannot see (docs/performance.md)
    profile[86], profile[160] = 1.0, 0.99
    assert cutoff_from_normalised(profile, 0.005) == 161 and _replay(profile)[2] == 80


def test_search_summary_keeps_per_layer_lists_with_nulls(data):
    r = deep(data, 1.2, eval_depths="search")
    s = r.summary()
    assert len(s["relative_entropy_median"]) == 40 and s["evaluated_layers"] == int(r.evaluated.sum())
    nulls = [i for i, v in enumerate(s["relative_entropy_norm_median"]) if v is None]
    assert nulls == list(np.flatnonzero(~r.evaluated))
    assert s["relative_entropy_norm_median"][-1] == pytest.approx(1.0)
    json.loads(json.dumps(s, allow_nan=False))  # strict JSON: no NaN where a layer was not evaluated
    assert (s["eval_depths"], s["entropy_dtype"], s["tf32"]) == ("search", "float64", False)


def test_analysis_rederives_the_cutoff_of_a_search_profile(data):
    """Stored search profiles (nulls off the grid) give the probe's cutoff for its own rtol."""
    r = deep(data, 1.76, eval_depths="search")
    s = r.summary()
    row = {k: None for k in ("dataset", "arch", "activation", "width", "channels")}
    row.update(sigma_w2=1.76, sigma_b2=0.05, depth=40, seed=0, status="ok", rtol=0.005, kind="probe",
               relative_entropy_norm_median=np.array(s["relative_entropy_norm_median"], dtype=float),
               relative_entropy_median=np.array(s["relative_entropy_median"], dtype=float),
               differential_entropy=np.array(s["differential_entropy"], dtype=float), seconds=1.0)
    p = probe_cutoffs(pd.DataFrame([row]))
    assert int(p["cutoff"].iloc[0]) == r.cutoff()


def test_nan_marks_not_evaluated_only_when_asked():
    r = [0.5, np.nan, 1.0]
    assert cutoff_from_normalised(r, 0.005) == 2  # diverged: NaN is off the plateau
    assert cutoff_from_normalised(r, 0.005, skip_nan=True) == 1  # not evaluated: passed over


def test_float32_entropy_matches_float64_and_keeps_the_cutoff(data):
    a = deep(data, 1.2, depth=12, eval_depths="all")
    b = deep(data, 1.2, depth=12, eval_depths="all", entropy_dtype="float32")
    np.testing.assert_allclose(b.relative_entropy, a.relative_entropy, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(b.differential_entropy, a.differential_entropy, atol=1e-4)
    assert b.cutoff() == a.cutoff()


def test_bad_evaluation_settings_raise(data):
    with pytest.raises(ValueError, match="eval_depths"):
        deep(data, 1.2, depth=3, eval_depths="some")
    with pytest.raises(ValueError, match="entropy_dtype"):
        deep(data, 1.2, depth=3, entropy_dtype="float16")


def test_neutral_settings_keep_old_point_ids_and_others_change_them():
    base = dict(kind="probe", dataset="mnist5k", arch="mlp", activation="tanh", width=None, channels=None,
                depth=10, sigma_w2=1.76, sigma_b2=0.05, seed=0, epochs=1, batch_size=64, lr=1e-3, rtol=0.005,
                train_samples=None, eval_samples=500)
    old = columns.point_id(base)  # a point stored before the evaluation settings existed
    neutral = dict(base, eval_depths="all", entropy_dtype="float64", tf32=False)
    assert columns.point_id(neutral) == old
    assert columns.point_id(dict(neutral, eval_depths=None, entropy_dtype=None, tf32=None)) == old  # null: neutral
    for k, v in (("eval_depths", "search"), ("entropy_dtype", "float32"), ("tf32", True)):
        assert columns.point_id(dict(neutral, **{k: v})) != old, k


def test_cli_probe_flags_and_bad_choice(capsys):
    argv = ["probe", "--depth", "12", "--width", "32", "--train-samples", "128", "--eval-samples", "16", "--json"]
    assert main(argv + ["--eval-depths", "all", "--entropy-dtype", "float32"]) == 0
    o = json.loads(capsys.readouterr().out)
    assert o["evaluated_layers"] == 12 and o["entropy_dtype"] == "float32" and o["eval_seconds"] > 0
    assert main(argv) == 0  # the default: search
    o = json.loads(capsys.readouterr().out)
    assert o["eval_depths"] == "search" and o["evaluated_layers"] < 12
    assert main(argv + ["--eval-depths", "some"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reconent: error:") and "--eval-depths" in err and err.count("\n") == 1


def test_bench_probe_reports_training_and_each_evaluation_apart(capsys):
    assert main(["bench", "probe", "--depth", "12", "--width", "32", "--steps", "8", "--eval-samples", "20",
                 "--json"]) == 0
    o = json.loads(capsys.readouterr().out)
    assert set(o["eval"]) == {"search", "all"} and o["train_seconds"] > 0
    assert o["eval"]["all"]["evaluated_layers"] == 12 > o["eval"]["search"]["evaluated_layers"]
    assert o["eval"]["all"]["cutoff"] == o["eval"]["search"]["cutoff"]
    assert o["peak_gflops"] > 0 and math.isfinite(o["efficiency"])
    assert (o["dataset"], o["cached"], o["steps"], o["checkpoints"]) == (None, False, 8, "none")  # random: one pass
    assert o["floor_seconds"] > 0 and o["floor_ratio"] == pytest.approx(o["train_seconds"] / o["floor_seconds"])


def test_bench_probe_on_a_real_split_cycles_it_caches_and_reports_the_floor(capsys):
    assert main(["bench", "probe", "--dataset", "mnist5k", "--depth", "3", "--steps", "70", "--eval-depths", "search",
                 "--eval-samples", "20", "--checkpoints", "auto", "--json"]) == 0
    o = json.loads(capsys.readouterr().out)
    assert (o["dataset"], o["train_samples"], o["steps"], o["cached"]) == ("mnist5k", 4000, 70, True)
    assert o["path"] == "stacked"
    assert o["checkpoint_steps"] == [4, 17, 70] and o["checkpoints"] == "auto" and o["checkpoint_seconds"] > 0
    assert list(o["cutoff_by_steps"]) == ["4", "17", "70"]
    assert o["cutoff_by_steps"]["70"] == o["eval"]["search"]["cutoff"]
    assert o["floor_seconds"] == pytest.approx(o["floor_matmul_seconds"] + o["floor_adam_seconds"])
    assert o["floor_ratio"] == pytest.approx(o["train_seconds"] / o["floor_seconds"])
    assert o["bandwidth_gbs"] == max(o["bandwidth_gbs_measured"]) > 0 and o["cache_build_seconds"] > 0
    assert main(["bench", "probe", "--dataset", "mnist5k", "--depth", "2", "--steps", "70", "--eval-depths", "search",
                 "--eval-samples", "20", "--cache", "off", "--json"]) == 0
    o = json.loads(capsys.readouterr().out)
    assert o["cached"] is False and o["checkpoint_steps"] == [70] and o["cache_build_seconds"] is None
    assert main(["bench", "probe", "--checkpoints", "0,x"]) == 2
    assert "--checkpoints" in capsys.readouterr().err


def test_paper_heatmaps_draw_the_stored_profiles_and_the_boundary(tmp_path):
    from reconent.analysis import synthetic as syn
    from reconent.analysis.heatmaps import paper_heatmaps

    truth = {0.5: 4, 1.0: 9, 1.76: 20, 3.0: 12}
    probes, _ = syn.grid(truth, 30, [2])
    line = paper_heatmaps(probes, tmp_path / "h.png")
    assert dict(zip(line["sigma_w2"], line["cutoff"])) == truth
    assert line["six_xi_c"].idxmax() == line["sigma_w2"].tolist().index(1.76)  # ξ_c peaks at criticality
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "h.png").stat().st_size > 20_000
    with pytest.raises(ValueError, match="one group"):
        paper_heatmaps(pd.concat([probes, probes.assign(sigma_b2=0.1)]), tmp_path / "x.png")


def test_the_gpu_training_loop_computes_the_cpu_loop_when_run_eagerly():
    """`_train_stacked_cuda` (bmm gradients, device-side gather and losses) runs eagerly off CUDA: the same
    maths as the CPU loop, checked here; tests/test_cuda.py checks its CUDA graphs on a GPU."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(700, WIDTH, generator=g)  # a full chunk of 512, then 188: the last batch is 60
    body = mlp(5, WIDTH, WIDTH, "tanh", 1.76, 0.05, seed=0).eval().requires_grad_(False)
    order = [torch.randperm(700, generator=g) for _ in range(2)]
    a = P._train_stacked(body, x, order, 64, 1e-3, torch.device("cpu"), 8)
    b = P._train_stacked_cuda(body, x, order, 64, 1e-3, torch.device("cpu"), 8)
    assert a[2] == b[2] == 2 * 11
    np.testing.assert_allclose(b[1], a[1], rtol=1e-5)
    for da, db in zip(a[0], b[0]):
        torch.testing.assert_close(db.weight, da.weight, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(db.bias, da.bias, rtol=1e-4, atol=1e-6)


def test_kept_activations_follow_the_chunking_between_levels():
    """`_evaluate_levels` keeps the body's activations per chunk for the next level; a level with another chunk
    size (a conv body under the memory cap) recomputes them. Either way: the values of a fresh evaluation."""
    from reconent.science import archs

    g = torch.Generator().manual_seed(3)
    ev = torch.rand(40, 1, 12, 12, generator=g)
    body = archs.build("cnn", 6, (1, 12, 12), seed=0, sigma_w2=1.5, sigma_b2=0.05, channels=4).eval()
    decoders = body.decoders().eval()
    L, widest, cpu = len(body), max(h[0].numel() for h in body.activations(ev[:1])), torch.device("cpu")

    def levels(plan, acts):
        S, H = np.full((L, 40), np.nan), np.full(L, np.nan)
        with torch.no_grad():
            for depths, chunk in plan:
                P._evaluate_levels(body, decoders, ev, cpu, 0, chunk, depths, torch.float64, S, H, None, acts, widest)
        return S, H

    plan = [([3, 6, 9], 7), ([1, 2], 7), ([4, 5], 16), ([7, 8], 7)]
    acts = {}
    kept = levels(plan, acts)
    assert acts["chunk"] == 7 and sorted(k for k in acts if k != "chunk") == list(range(0, 40, 7))
    fresh = levels(plan, None)
    for a, b in zip(kept, fresh):
        np.testing.assert_array_equal(a, b)
    assert not np.isnan(kept[0][[0, 1, 2, 3, 4, 5, 6, 7, 8]]).any()
