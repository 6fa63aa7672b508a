"""Images for the VGG16 cascade: a folder of image files, CIFAR10 in colour, or a reconent dataset."""
from __future__ import annotations

from pathlib import Path

import torch

from reconent.errors import UserError


def load_images(source, *, data_root=None, download: bool = False, size: int = 224, max_images: int = 264,
                seed: int = 0) -> torch.Tensor:
    """Images as (N, 3, size, size) float32 in [0, 1], shuffled with `seed`, at most `max_images`.

    `source`: a folder (torchvision ImageFolder layout with class subfolders, or a flat folder of
    image files), 'cifar10' (torchvision CIFAR10 under data_root) or any reconent dataset name
    (grayscale ones are repeated to 3 channels).
    """
    from torchvision.transforms.functional import resize

    gen = torch.Generator().manual_seed(seed)
    p = Path(str(source)).expanduser()
    if p.is_dir():
        x = _folder_images(p, size, max_images, gen)
    else:
        x = _dataset_images(str(source), data_root, download, max_images, gen)
        x = torch.cat([resize(c, [size, size], antialias=True) for c in x.split(64)]).clamp_(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous()


def _folder_images(p: Path, size: int, max_images: int, gen) -> torch.Tensor:
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor, resize

    exts = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
    files = sorted(f for f in p.rglob("*") if f.suffix.lower() in exts and f.is_file())
    if not files:
        raise UserError(f"no images ({', '.join(sorted(exts))}) found under {p}")
    order = torch.randperm(len(files), generator=gen)[:max_images]
    out = []
    for i in order.tolist():
        with Image.open(files[i]) as im:
            t = pil_to_tensor(im.convert("RGB")).float().div_(255.0)
        out.append(resize(t, [size, size], antialias=True).clamp_(0, 1))
    return torch.stack(out)


def _dataset_images(name: str, data_root, download: bool, max_images: int, gen) -> torch.Tensor:
    from reconent.science import data as datasets

    if name == "cifar10":  # in colour; through reconent.science.data (download lock, DatasetNotFound)
        x = datasets.cifar10_images(data_root, download)
        idx = torch.randperm(len(x), generator=gen)[:max_images]
        return x[idx].float().div_(255.0)
    if name not in datasets.DATASETS:
        raise UserError(f"--images must be a folder, 'cifar10' or one of {', '.join(datasets.DATASETS)}; got {name!r}")
    d = datasets.load(name, data_root, download)
    idx = torch.randperm(len(d.train_x), generator=gen)[:max_images]
    return d.train_x[idx]
