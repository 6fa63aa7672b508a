import math


from reconent.science import data
from reconent.science.models import mlp
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
