import math

import pytest
import torch

from reconent.science import data
from reconent.science.archs.mlp import mlp
from reconent.science.train import train


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
