import math

import pytest
import torch

from reconent.science import data
from reconent.science.archs.mlp import mlp
from reconent.science.train import Extrapolate, replay, train


def test_training_reaches_threshold_and_stops_early():
    d = data.load("mnist5k")
    body = mlp(2, 128, 784, "tanh", 1.5, 0.05, seed=0)
    epochs = []
    r = train(body, d.train_x, d.train_y, d.test_x, d.test_y, epochs=20, threshold=0.5, lr=0.05,
              on_epoch=lambda e, acc, loss: epochs.append((e, acc)))
    assert r.reached and r.status == "ok" and r.model is not None and "model" not in r.summary()
    assert r.epochs < 20 and len(r.accuracy) == r.epochs == len(epochs)
    assert r.final_accuracy > 0.5 and all(a <= 0.5 for a in r.accuracy[:-1])


def test_untrainable_records_curve_without_reaching():
    d = data.load("mnist5k")
    r = train(mlp(2, 64, 784, seed=0), d.train_x, d.train_y, d.test_x, d.test_y, epochs=2, threshold=0.99,
              lr=1e-4, train_samples=256)
    assert not r.reached and r.epochs == 2 and len(r.train_loss) == 2


def test_white_noise_memorisation_measures_training_accuracy():
    d = data.load("white_noise")
    r = train(mlp(1, 256, 784, seed=0), d.train_x, d.train_y, epochs=100, threshold=0.9, lr=0.05,
              train_samples=64, batch_size=16)
    assert r.reached  # 64 random labels can be memorised; test accuracy would stay near 0.1


def test_divergence_is_a_status():
    d = data.load("mnist5k")
    r = train(mlp(30, 64, 784, "relu", 8.0, 0.0, seed=0), d.train_x, d.train_y, d.test_x, d.test_y, epochs=3,
              threshold=0.9, lr=1.0, train_samples=256)
    assert r.status == "diverged" and not math.isfinite(r.train_loss[-1])


def _params(module):
    return [(n, p.detach().clone(), p.requires_grad, p.device) for n, p in module.named_parameters()]


def test_train_leaves_the_callers_body_as_it_was_and_returns_the_trained_copy():
    d = data.load("mnist5k")
    body = mlp(2, 32, 784, "tanh", 1.5, 0.05, seed=0).requires_grad_(False)  # e.g. frozen by the caller
    before = _params(body)
    r = train(body, d.train_x, d.train_y, d.test_x, d.test_y, epochs=1, threshold=1.0, lr=0.05,
              train_samples=256)
    after = _params(body)
    for (n, v0, g0, d0), (_, v1, g1, d1) in zip(before, after, strict=True):
        torch.testing.assert_close(v1, v0, rtol=0, atol=0, msg=f"{n} changed")
        assert (g1, d1) == (g0, d0), n
    # the trained weights are in the result, on a copy of the body
    assert r.model.body is not body
    trained = dict(r.model.body.named_parameters())
    assert any(not torch.equal(trained[n], v0) for n, v0, *_ in before)
    assert all(p.requires_grad for p in r.model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU to see a device move")
def test_train_on_cuda_leaves_the_callers_body_on_the_cpu():
    d = data.load("mnist5k")
    body = mlp(1, 16, 784, seed=0)
    train(body, d.train_x, d.train_y, epochs=1, train_samples=64, device="cuda")
    assert all(p.device.type == "cpu" for p in body.parameters())


# ---------------------------------------------------------------- verdicts decided early
def _ramp(first, last, epochs, power=1.0):
    return [first + (last - first) * (e / epochs) ** power for e in range(1, epochs + 1)]


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_stop_rule_never_stops_a_slow_riser_that_passes_late(power):
    # from chance to just over the threshold at the very end: linear, and accelerating (quadratic)
    curve = _ramp(0.1, 0.82, 100, power)
    assert next(i for i, a in enumerate(curve) if a > 0.8) >= 95  # it passes late ...
    assert replay(curve, 100, 0.8) is None  # ... and is never stopped on the way
    wiggly = [a + 0.01 * (-1) ** i for i, a in enumerate(_ramp(0.1, 0.83, 100))]  # noisy checks too
    assert replay(wiggly, 100, 0.8) is None


def test_stop_rule_never_stops_a_late_take_off():
    # shaped like the measured σ_w² 1.2, depth 55 (analysis/budgets): at chance (with noise up to 0.2) for 26
    # epochs of 100, then a rise that passes 0.8 at epoch 56
    curve = [0.1 + 0.1 * (e % 3 == 0) for e in range(1, 27)] + _ramp(0.25, 0.81, 30, 0.7)
    assert len(curve) == 56 and curve[-1] > 0.8 and max(curve[:-1]) <= 0.8
    assert replay(curve, 100, 0.8) is None
    assert replay(curve, 60, 0.8) is None  # a smaller budget it still passes within


def test_stop_rule_never_stops_a_risen_curve_that_stalls_then_rises_again(stalled_curve):
    # a measured curve (conftest): a rate read over the last fifth of the curve (window 0.2, the rule's earlier
    # version) saw the stall as final and stopped it at epoch 22
    assert replay(stalled_curve, 50, 0.8) is None
    s = replay(stalled_curve, 50, 0.8, Extrapolate(window=0.2))
    assert s is not None and s["epoch"] == 22


def test_stop_rule_stops_a_flat_curve_late_and_a_plateau_below_the_threshold_early():
    flat = [0.1 + 0.005 * (-1) ** i for i in range(100)]
    s = replay(flat, 100, 0.8)
    assert s is not None and s["epoch"] == 75 and s["bound"] <= 0.8  # three quarters of the budget, then stopped
    assert replay(flat[:74], 100, 0.8) is None  # before the flat patience is spent: never
    plateau = [0.1 + 0.5 * (1 - math.exp(-e / 10)) for e in range(1, 101)]  # saturates at 0.6 < 0.8
    s = replay(plateau, 100, 0.8)
    assert s is not None and 25 <= s["epoch"] <= 60
    assert replay(plateau, 100, 0.55) is None  # the same curve passes a lower threshold: not stopped
    assert replay(flat, 100, 0.8, "none") is None
    with pytest.raises(ValueError, match="stop must be one of"):
        replay(flat, 100, 0.8, "patience")


def test_a_stopped_run_records_the_rule_in_its_row():
    """A real training that cannot learn (lr 1e-7) under `stop: extrapolate`: the row says it stopped early, when,
    and the rule's numbers; the same point without the rule runs its whole budget and keeps its id."""
    from reconent.sweep.columns import point, point_id
    from reconent.sweep.trial import run_point

    coords = dict(dataset="mnist5k", arch="mlp", activation="tanh", width=16, channels=None, depth=2,
                  sigma_w2=1.5, sigma_b2=0.05, seed=0)
    settings = dict(epochs=8, threshold=0.8, lr=1e-7, batch_size=64, train_samples=256, accuracy_on="test",
                    eval_every=None, stop="extrapolate")
    p = point("train", "t", coords, settings)
    row = run_point(p)
    assert row["status"] == "ok" and row["stopped_early"] is True and row["reached"] is False
    assert row["epochs_run"] == 6 < 8 and len(row["accuracy"]) == 6  # a flat curve: ⌈0.75 · 8⌉ epochs
    assert row["stop_bound"] <= 0.8 and row["stop_rate"] >= 0
    assert row["curve_steps"] == [4 * e for e in range(1, 7)] and row["steps_per_epoch"] == 4
    assert row["curve_accuracy"] == row["accuracy"]
    plain = point("train", "t", coords, {**settings, "stop": "none"})
    old = point("train", "t", coords, {k: v for k, v in settings.items() if k not in ("eval_every", "stop")} | {
        "eval_every": None, "stop": "none"})
    assert point_id(plain) == point_id(old) != point_id(p)
    full = run_point(plain)
    assert full["stopped_early"] is False and full["epochs_run"] == 8 and full["stop_bound"] is None


def test_eval_every_stops_a_trainable_run_inside_its_epoch():
    d = data.load("mnist5k")
    body = mlp(2, 128, 784, "tanh", 1.5, 0.05, seed=0)
    r = train(body, d.train_x, d.train_y, d.test_x, d.test_y, epochs=3, threshold=0.5, lr=0.05, eval_every=10)
    per = r.steps_per_epoch
    assert r.reached and per == math.ceil(len(d.train_x) / 64)
    assert r.curve_steps == sorted(r.curve_steps) and r.curve_steps[-1] % per != 0  # passed between epoch ends
    assert r.curve_accuracy[-1] > 0.5 and all(a <= 0.5 for a in r.curve_accuracy[:-1])
    assert r.accuracy[-1] == r.curve_accuracy[-1] and r.epochs == len(r.accuracy)
    assert all(s % 10 == 0 or s % per == 0 for s in r.curve_steps)
    once = train(body, d.train_x, d.train_y, d.test_x, d.test_y, epochs=3, threshold=0.5, lr=0.05)
    assert once.curve_steps == [per * e for e in range(1, once.epochs + 1)]
    assert r.curve_steps[-1] < once.curve_steps[-1]  # it stopped sooner than a check per epoch allows
