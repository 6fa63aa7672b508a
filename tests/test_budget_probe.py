"""The probe's budget in steps, its checkpoints (the anytime probe) and the cached body activations.

Small bodies only (width 32, depth <= 8, 300 training samples: 5 mini-batches of 64 per pass, the last of 44)."""
import json

import numpy as np
import pytest
import torch

from reconent.science import probe as P
from reconent.science.archs.mlp import mlp
from reconent.science.models import DATA, stream

WIDTH, N, B = 32, 300, 64
PER_PASS = 5  # ceil(300 / 64)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(21)
    return torch.rand(N, WIDTH, generator=g), torch.rand(40, WIDTH, generator=g)


def body(depth=4, sigma_w2=1.76, seed=0):
    return mlp(depth, WIDTH, WIDTH, "tanh", sigma_w2, 0.05, seed)


def run(data, depth=4, sigma_w2=1.76, **kw):
    x, ev = data
    kw.setdefault("checkpoints", "none")
    return P.probe(body(depth, sigma_w2), x, ev, **kw)


def same_decoders(a, b) -> bool:
    return all(torch.equal(p.weight, q.weight) and torch.equal(p.bias, q.bias) for p, q in zip(a.decoders, b.decoders))


def max_diff(a, b) -> float:
    return max(max((p.weight - q.weight).abs().max().item(), (p.bias - q.bias).abs().max().item())
               for p, q in zip(a.decoders, b.decoders))


# ------------------------------------------------------------------------------------------------ the budget
@pytest.mark.parametrize("stacked", [True, False])
def test_epochs_are_the_equivalent_steps_bit_for_bit(data, stacked):
    for epochs in (1, 3):
        a, b = run(data, epochs=epochs, stacked=stacked), run(data, steps=epochs * PER_PASS, stacked=stacked)
        assert a.steps_run == b.steps_run == epochs * PER_PASS
        assert same_decoders(a, b)
        np.testing.assert_array_equal(a.relative_entropy, b.relative_entropy)
        np.testing.assert_array_equal(a.decoder_loss, b.decoder_loss)


def test_the_default_budget_is_the_papers_938_steps(data):
    assert P.DEFAULT_STEPS == 938
    r = run(data, depth=2)
    assert r.steps_run == 938 and r.checkpoint_steps == [938] and r.cached
    assert r.summary()["steps_run"] == 938 and "steps" not in r.summary()


def test_a_budget_is_steps_or_epochs_not_both(data):
    with pytest.raises(ValueError, match="steps.*epochs|epochs.*steps"):
        run(data, steps=10, epochs=1)
    for bad in ({"steps": 0}, {"epochs": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            run(data, **bad)


def test_a_cycled_split_is_reshuffled_every_pass():
    gen = torch.Generator().manual_seed(0)
    order = P.pass_orders(gen, N, B, 2 * PER_PASS + 2)  # ends inside the third pass
    assert len(order) == 3
    sched = P.step_schedule(order, B, 2 * PER_PASS + 2)
    assert len(sched) == 12 and [len(s) for s in sched[:PER_PASS]] == [64, 64, 64, 64, 44]
    first, second = torch.cat(sched[:PER_PASS]), torch.cat(sched[PER_PASS:2 * PER_PASS])
    assert torch.equal(first.sort().values, torch.arange(N)) and torch.equal(second.sort().values, torch.arange(N))
    assert not torch.equal(first, second)  # the same samples, in another order
    assert torch.equal(torch.cat(sched[2 * PER_PASS:]), order[2][:2 * B])


def test_the_probe_trains_on_that_schedule_and_a_repeated_pass_differs(data):
    """The probe's decoders are those of its reshuffled passes, not of the first pass twice."""
    x, ev = data
    steps = 2 * PER_PASS
    r = run(data, steps=steps, cache=False)
    frozen = body().eval().requires_grad_(False)
    order = P.pass_orders(stream(0, 0, DATA), N, B, steps)  # the probe's stream: no subsets drawn before
    ours = P._train_stacked(frozen, x, order, B, 1e-3, CPU, 8, steps)[0]
    twice = P._train_stacked(frozen, x, [order[0], order[0]], B, 1e-3, CPU, 8, steps)[0]
    assert all(torch.equal(g.weight, h.weight) for g, h in zip(r.decoders, ours))
    assert not all(torch.equal(g.weight, h.weight) for g, h in zip(r.decoders, twice))


@pytest.mark.parametrize("stacked", [True, False])
def test_a_budget_that_ends_inside_a_pass(data, stacked):
    """7 steps: one pass of 5, then 2 of the second pass. The decoder loss is the mean over those 2 steps;
    checked against a plain autograd loop over `step_schedule` with torch.optim.Adam."""
    x, _ = data
    steps = PER_PASS + 2
    r = run(data, steps=steps, stacked=stacked, cache=False)
    assert r.steps_run == steps and np.isfinite(r.decoder_loss).all()
    frozen = body().eval().requires_grad_(False)
    order = P.pass_orders(stream(0, 0, DATA), N, B, steps)
    decoders = frozen.decoders()
    opt = torch.optim.Adam(list(decoders.parameters()), lr=1e-3)
    per_step = []
    for idx in P.step_schedule(order, B, steps):
        with torch.no_grad():
            hs = frozen.activations(x[idx])
        losses = torch.stack([torch.mean((g(o) - i) ** 2) for g, i, o in zip(decoders, hs, hs[1:])])
        opt.zero_grad()
        losses.sum().backward()
        opt.step()
        per_step.append(losses.detach().double().numpy())
    np.testing.assert_allclose(r.decoder_loss, np.mean(per_step[PER_PASS:], axis=0), rtol=1e-5)
    assert not np.allclose(r.decoder_loss, np.mean(per_step, axis=0), rtol=1e-5)  # not over all 7 steps
    for g, h in zip(r.decoders, decoders):
        torch.testing.assert_close(g.weight, h.weight, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------------ the cache
@pytest.mark.parametrize("stacked", [True, False])
def test_cached_activations_train_the_same_decoders(data, stacked):
    kw = dict(depth=6, steps=300, checkpoints="20,75", stacked=stacked)
    a, b = run(data, cache=True, **kw), run(data, cache=False, **kw)
    assert (a.cached, b.cached) == (True, False)
    assert max_diff(a, b) <= 1e-5
    assert a.cutoff_by_steps() == b.cutoff_by_steps()
    np.testing.assert_allclose(a.decoder_loss, b.decoder_loss, rtol=1e-5)
    np.testing.assert_allclose(a.relative_entropy, b.relative_entropy, rtol=1e-4, atol=1e-7)


def test_the_cache_is_used_when_the_split_is_cycled_and_fits(data, monkeypatch):
    assert run(data, steps=PER_PASS).cached is False  # one pass: nothing to reuse
    assert run(data, steps=PER_PASS + 1).cached is True
    monkeypatch.setattr(P, "CACHE_BYTES", 4 * WIDTH * 5 * N - 1)  # h_0..h_4 of 300 samples: one byte too many
    assert run(data, steps=PER_PASS + 1).cached is False


# ------------------------------------------------------------------------------------------------ checkpoints
def test_checkpoint_settings():
    assert P.default_checkpoints(938) == [58, 234, 938] and P.default_checkpoints(3) == [3]
    assert P.parse_checkpoints("auto", 938) == [58, 234, 938]
    for none in ("none", None, []):
        assert P.parse_checkpoints(none, 50) == [50]
    assert P.parse_checkpoints("7,3", 50) == P.parse_checkpoints([3, 7], 50) == [3, 7, 50]
    assert P.parse_checkpoints([3, 50], 50) == [3, 50]
    for bad in ([0], [51], "3,x"):
        with pytest.raises(ValueError, match="checkpoints"):
            P.parse_checkpoints(bad, 50)


def test_bad_checkpoints_raise_before_training(data):
    with pytest.raises(ValueError, match="checkpoints"):
        run(data, steps=10, checkpoints=[11])


@pytest.mark.parametrize("stacked", [True, False])
def test_checkpoints_do_not_change_the_training(data, stacked):
    kw = dict(depth=5, steps=3 * PER_PASS + 2, stacked=stacked, cache=False)
    a, b = run(data, checkpoints="auto", **kw), run(data, checkpoints="none", **kw)
    assert a.checkpoint_steps == [1, 4, 17] and b.checkpoint_steps == [17]
    assert same_decoders(a, b)
    np.testing.assert_array_equal(a.relative_entropy, b.relative_entropy)
    np.testing.assert_array_equal(a.decoder_loss, b.decoder_loss)
    assert list(b.cutoff_by_steps()) == ["17"] and b.checkpoint_seconds == 0.0
    assert a.checkpoint_seconds > 0


def test_cutoff_by_steps_ends_at_the_probes_own_budget_and_cutoff(data):
    r = run(data, depth=12, steps=40, checkpoints=[3, 10, 22], eval_depths="search")
    by = r.cutoff_by_steps()
    assert list(by) == ["3", "10", "22", "40"] and by["40"] == r.cutoff()
    assert r.checkpoint_norm_median.shape == (4, 12)
    np.testing.assert_array_equal(r.checkpoint_norm_median[-1], r.norm_median)
    assert r.checkpoint_cutoff(-1) == r.checkpoint_cutoff("40") == r.checkpoint_cutoff(steps=40) == r.cutoff()
    with pytest.raises(ValueError, match="checkpoint"):
        r.checkpoint_cutoff(steps=5)
    s = r.summary()
    assert s["steps_run"] == 40 and "steps" not in s and s["checkpoint_steps"] == [3, 10, 22, 40]
    assert s["checkpoints"] == "3,10,22" and s["cutoff_by_steps"] == by and s["checkpoint_seconds"] > 0
    assert len(s["checkpoint_norm_median"]) == 4 and all(len(row) == 12 for row in s["checkpoint_norm_median"])
    assert s["checkpoint_norm_median"][-1] == s["relative_entropy_norm_median"]
    # the intermediate readings use the search: layers it skipped are null
    assert any(v is None for row in s["checkpoint_norm_median"][:-1] for v in row)
    assert all(v == pytest.approx(1.0) for v in (row[-1] for row in s["checkpoint_norm_median"]))
    assert s["eval_seconds"] == pytest.approx(s["seconds"] - s["train_seconds"] - s["checkpoint_seconds"])
    json.loads(json.dumps(s, allow_nan=False))
    assert run(data, steps=40).summary()["checkpoints"] == "none"


@pytest.mark.parametrize("sigma_w2", [0.6, 1.76])
def test_a_checkpoint_reads_what_a_probe_stopped_there_reads(data, sigma_w2):
    """Depth 6 <= 8: the search evaluates every layer, so both profiles are exhaustive. The checkpoint's cutoff
    re-derived for another rtol is the stopped probe's cutoff for that rtol."""
    r = run(data, depth=6, sigma_w2=sigma_w2, steps=60, checkpoints="7,25")
    assert r.checkpoint_evaluated.all()
    for i, k in enumerate([7, 25]):
        stopped = run(data, depth=6, sigma_w2=sigma_w2, steps=k)
        np.testing.assert_allclose(r.checkpoint_norm_median[i], stopped.norm_median, rtol=1e-6)
        for rtol in (0.001, 0.005, 0.02, 0.1):
            assert r.checkpoint_cutoff(i, rtol) == r.checkpoint_cutoff(str(k), rtol) == stopped.cutoff(rtol), (k, rtol)
            assert r.cutoff_by_steps(rtol)[str(k)] == stopped.cutoff(rtol)


def test_stacked_and_generic_agree_with_checkpoints_inside_a_pass(data):
    kw = dict(depth=5, steps=2 * PER_PASS + 3, checkpoints="3,8")
    a, b = run(data, stacked=True, **kw), run(data, stacked=False, **kw)
    assert (a.path, b.path) == ("stacked", "generic") and a.checkpoint_steps == b.checkpoint_steps == [3, 8, 13]
    np.testing.assert_allclose(a.relative_entropy, b.relative_entropy, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.decoder_loss, b.decoder_loss, rtol=1e-4)
    np.testing.assert_allclose(a.checkpoint_norm_median, b.checkpoint_norm_median, rtol=1e-4)
    assert a.cutoff_by_steps() == b.cutoff_by_steps()


@pytest.mark.parametrize("cache", [False, True])
def test_the_gpu_loop_stops_exactly_at_checkpoints_when_run_eagerly(cache):
    """`_train_stacked_cuda` splits chunks at checkpoints (for its graphs); off CUDA it runs eagerly and must
    see the CPU loop's decoders at every checkpoint and at a budget inside a pass (700 = 11 batches a pass)."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(700, WIDTH, generator=g)
    frozen = mlp(5, WIDTH, WIDTH, "tanh", 1.76, 0.05, seed=0).eval().requires_grad_(False)
    steps, at = 11 + 9, [3, 13]  # checkpoints inside a chunk of 8 and inside the second pass
    order = P.pass_orders(g, 700, 64, steps)
    seen = {}

    def keep(name):
        return lambda decs, k: seen.setdefault(name, []).append((k, [d.weight.clone() for d in decs]))

    a = P._train_stacked(frozen, x, order, 64, 1e-3, CPU, 8, steps, at, keep("cpu"), cache)
    b = P._train_stacked_cuda(frozen, x, order, 64, 1e-3, CPU, 8, steps, at, keep("gpu"), cache)
    assert a[2] == b[2] == steps
    np.testing.assert_allclose(b[1], a[1], rtol=1e-5)
    assert [k for k, _ in seen["cpu"]] == [k for k, _ in seen["gpu"]] == at
    for (_, wa), (_, wb) in zip(seen["cpu"], seen["gpu"]):
        for da, db in zip(wa, wb):
            torch.testing.assert_close(db, da, rtol=1e-4, atol=1e-6)
    for da, db in zip(a[0], b[0]):
        torch.testing.assert_close(db.weight, da.weight, rtol=1e-4, atol=1e-6)
