"""`reconent explain`: pictures of what each layer keeps of its input (arXiv:2406.12916, SCIENCE §4).

Two models, both through the same cascade probe (`reconent.probe.probe`, which freezes the body
and trains one decoder g_ℓ: h_ℓ → h_{ℓ-1} per layer):

* ``explain_mlp``: an MLP body plus Linear head is first **trained** on a dataset
  (`reconent.train.train`). The trained head becomes one more probe layer, ``HeadBlock``
  (logits = W h_L + b, no activation), so its decoder logits → h_L is trained with the cascade,
  in the same mini-batches and with the same Adam, as every other decoder. Figures: the input and
  its reconstructions x̂^(ℓ) from every layer and from the logits; the "ideal input" of each class,
  i.e. the vector with +1 at the class and −1 elsewhere pushed back through the head's decoder and
  then g_L, …, g_1 (the paper's convention; its network had a tanh on the output, ours gives raw
  logits, so ±1 is a small-logit probe); the entropy profile of the trained network.
* ``explain_vgg16``: torchvision VGG16 ``features`` cut into probe layers after named layers
  (``relu1_2``, ``pool1``, …). A probe layer is the run of VGG modules since the previous cut; its
  decoder mirrors it backwards: nearest ×2 upsampling for each max-pool, a 3×3 ConvTranspose2d
  (padding 1) for each conv, ReLU between stages, and a final ReLU (targets are post-ReLU/pool
  activations) or tanh for the first layer, whose target is the image. The ImageNet
  normalisation is part of the first probe layer, so h_0 is the image with pixels in [0, 1], as
  everywhere in reconent. Figures: per-layer reconstructions, single-channel probes (zero every
  channel of a layer but one, then run the cascade back to the image), the entropy profile.
  ImageNet weights are used where torchvision can load them; otherwise (no internet, no cache) a
  warning is printed and a random VGG16 is used: convs ~ N(0, 2/(C_out·k²)), biases 0, which is
  torchvision's own VGG init, drawn from reconent's (seed, layer) streams.

Each run writes PNGs and ``manifest.json`` to its output folder; ``figures(folder)`` lists the
figures with their captions, for the HTML report.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reconent.science import models
from reconent.science.models import FORWARD, Body, LinearDecoder, uniform_, stream

MANIFEST = "manifest.json"


# ---------------------------------------------------------------- shared
def figures(out_dir) -> list[dict]:
    """The figures an explain run wrote to `out_dir`: [{"path", "title", "kind"}], paths absolute."""
    out_dir = Path(out_dir)
    m = json.loads((out_dir / MANIFEST).read_text())
    return [{**f, "path": str(out_dir / f["path"])} for f in m["figures"]]


def _write_manifest(out_dir: Path, info: dict, figs: list[dict]) -> dict:
    info = {**info, "figures": figs}
    (out_dir / MANIFEST).write_text(json.dumps(info, indent=1, default=_jsonable))
    return {**info, "figures": [{**f, "path": str(out_dir / f["path"])} for f in figs]}


def _jsonable(v):
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _as_image(a: np.ndarray, shape) -> np.ndarray:
    """A sample as something imshow draws: (H, W) gray, or (H, W, 3) RGB rescaled to [0, 1] per image."""
    a = np.asarray(a, dtype=np.float64).reshape(shape)
    if a.ndim == 3 and a.shape[0] == 3:
        a = a.transpose(1, 2, 0)
        lo, hi = a.min(), a.max()
        return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return a.reshape(a.shape[-2:]) if a.ndim == 3 else a


def _grid(path: Path, panels: list[list], titles: list[list[str]], suptitle: str, shape, cell: float = 1.45) -> None:
    """Rows × columns of images; panels[i][j] a flat sample or None (blank); titles per panel."""
    from reconent.analysis.plots import plt

    rows, cols = len(panels), max(len(r) for r in panels)
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols + 0.3, cell * rows + 0.7), squeeze=False,
                             constrained_layout=True)
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            if j >= len(panels[i]) or panels[i][j] is None:
                ax.axis("off")
                continue
            img = _as_image(panels[i][j], shape)
            ax.imshow(img, cmap=None if img.ndim == 3 else "gray")
            if titles[i][j]:
                ax.set_title(titles[i][j], fontsize=8)
    fig.suptitle(suptitle, fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- MLP
class HeadBlock(nn.Module):
    """A trained classifier head as the last probe layer: logits = W h_L + b, no activation.

    Its decoder (logits → h_L) is an ordinary LinearDecoder, so the cascade can start from the
    logits, or from any vector in logit space such as an "ideal" one-hot.
    """

    def __init__(self, head: nn.Linear):
        super().__init__()
        self.head = head
        self.n_in, self.n_out = head.in_features, head.out_features

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h.flatten(1))

    def decoder(self, gen: torch.Generator) -> nn.Module:
        return LinearDecoder(self.n_out, self.n_in, gen)


def ideal_inputs(decoders, n_classes: int, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """Push the vectors (high at class k, low elsewhere) back through all decoders, last first.

    `decoders` are g_1..g_L then the head's decoder; returns (n_classes, *input shape of g_1's output).
    """
    v = torch.full((n_classes, n_classes), float(low))
    v.fill_diagonal_(float(high))
    with torch.no_grad():
        for g in reversed(list(decoders)):
            v = g(v)
    return v


def explain_mlp(out_dir, *, dataset: str = "mnist5k", data_root=None, download: bool = False, depth: int = 6,
                width: int | None = None, activation: str = "tanh", sigma_w2: float = 1.76, sigma_b2: float = 0.05,
                seed: int = 0, train_epochs: int = 5, train_lr: float = 1e-2, train_samples: int | None = None,
                probe_epochs: int = 1, lr: float = 1e-3, batch_size: int = 64, probe_samples: int | None = None,
                eval_samples: int = 500, n_show: int = 6, device: str = "cpu", log=None) -> dict:
    """Train an MLP, train the cascade on it (with the head), write the PNGs; returns the manifest dict."""
    from reconent.science import data as datasets
    from reconent.science.models import build
    from reconent.analysis.plots import profile_plot
    from reconent.science.probe import probe
    from reconent.science.train import train

    log = log or (lambda msg: None)
    models.device(device)  # fail before training, not after
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    d = datasets.load(dataset, data_root, download)
    body = build("mlp", depth, d.shape, seed=seed, sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=activation,
                 width=width)
    log(f"training the {depth}-layer MLP with its head on {dataset} for {train_epochs} epochs")
    tr = train(body, d.train_x, d.train_y, d.test_x, d.test_y, epochs=train_epochs, threshold=1.0, lr=train_lr,
               batch_size=batch_size, n_classes=d.n_classes, train_samples=train_samples, device=device)
    model = tr.model.cpu()
    full = Body(list(body.cpu()) + [HeadBlock(model.head)], body.in_shape, seed, "mlp")
    log(f"test accuracy {tr.final_accuracy:.3f}; training the cascade decoders (with the head's) on the trained body")
    r = probe(full, d.train_x, d.test_x, epochs=probe_epochs, batch_size=batch_size, lr=lr, rtol=0.005,
              train_samples=probe_samples, eval_samples=eval_samples, device=device, n_show=n_show)
    img = d.shape[1:] if d.shape[0] == 1 else d.shape
    L = depth
    figs = []

    # input and reconstructions from every layer and from the logits
    names = ["input"] + [f"from layer {l}" for l in range(1, L + 1)] + ["from logits"]
    ex = r.examples
    panels = [[ex[c, i] for c in range(L + 2)] for i in range(ex.shape[1])]
    titles = [names if i == 0 else [""] * len(names) for i in range(len(panels))]
    _grid(out_dir / "mlp_reconstructions.png", panels, titles,
          f"trained MLP on {dataset} (depth {L}, σ_w²={sigma_w2:g}, σ_b²={sigma_b2:g}, test acc "
          f"{tr.final_accuracy:.2f}): input and cascade reconstructions", img)
    figs.append({"path": "mlp_reconstructions.png", "kind": "reconstructions",
                 "title": f"Trained MLP on {dataset}: inputs and their reconstructions from every layer and from "
                          "the logits"})

    # ideal input per class
    ideal = ideal_inputs(r.decoders, d.n_classes).numpy()
    cols = min(d.n_classes, 5)
    panels = [[ideal[k] for k in range(i, min(i + cols, d.n_classes))] for i in range(0, d.n_classes, cols)]
    titles = [[f"class {k}" for k in range(i, min(i + cols, d.n_classes))] for i in range(0, d.n_classes, cols)]
    _grid(out_dir / "mlp_ideal_inputs.png", panels, titles,
          "ideal input per class: (+1 at the class, −1 elsewhere) through the head's decoder and g_L…g_1", img, 1.8)
    figs.append({"path": "mlp_ideal_inputs.png", "kind": "ideal_inputs",
                 "title": f"Trained MLP on {dataset}: the ideal input of each class, decoded from the output layer"})

    profile_plot(r, out_dir / "mlp_profile.png",
                 f"trained MLP on {dataset}: entropy profile (layer {L + 1} = logits)")
    figs.append({"path": "mlp_profile.png", "kind": "profile",
                 "title": f"Trained MLP on {dataset}: reconstruction entropy per layer (the last layer is the logits)"})
    info = {"model": "mlp", "dataset": dataset, "depth": depth, "width": width, "activation": activation,
            "sigma_w2": sigma_w2, "sigma_b2": sigma_b2, "seed": seed, "train": tr.summary(),
            "probe": {k: v for k, v in r.summary().items()}, "layer_names": names[1:]}
    return _write_manifest(out_dir, info, figs)


# ---------------------------------------------------------------- VGG16
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG16_DEFAULT_LAYERS = ("relu1_2", "pool1", "relu2_2", "pool2", "relu3_3", "pool3", "relu4_3", "pool4", "relu5_3",
                        "pool5")


def vgg16_layer_names(features: nn.Sequential) -> list[str]:
    """Names of the modules of VGG16 `features`: conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, …"""
    names, block, idx = [], 1, 0
    for m in features:
        if isinstance(m, nn.Conv2d):
            idx += 1
            names.append(f"conv{block}_{idx}")
        elif isinstance(m, nn.ReLU):
            names.append(f"relu{block}_{idx}")
        elif isinstance(m, nn.MaxPool2d):
            names.append(f"pool{block}")
            block, idx = block + 1, 0
        else:
            names.append(f"{type(m).__name__.lower()}{len(names)}")
    return names


def load_vgg16(weights: str = "imagenet", seed: int = 0, warn=None) -> tuple[nn.Sequential, str]:
    """VGG16 `features` and which weights it got ('imagenet' or 'random').

    'imagenet' tries torchvision's VGG16_Weights.IMAGENET1K_V1 (local cache or download); when that
    fails, `warn` (default: stderr) is told why and random weights are used instead.
    """
    import torchvision

    if weights not in ("imagenet", "random"):
        raise ValueError(f"weights must be 'imagenet' or 'random', got {weights!r}")
    if weights == "imagenet":
        try:
            m = torchvision.models.vgg16(weights=torchvision.models.VGG16_Weights.IMAGENET1K_V1)
            return m.features.eval(), "imagenet"
        except Exception as e:  # noqa: BLE001 -- no internet, no cache, corrupt file: all mean "use random"
            (warn or (lambda s: print(s, file=sys.stderr)))(
                f"reconent: warning: could not load VGG16 ImageNet weights ({type(e).__name__}: {e}); "
                f"using a random VGG16 (seed {seed}) so the pictures show a random network")
    try:  # just the conv stack: skips the 120M-parameter classifier a full vgg16() would initialise
        from torchvision.models.vgg import cfgs, make_layers

        features = make_layers(cfgs["D"], batch_norm=False)
    except ImportError:
        features = torchvision.models.vgg16(weights=None).features
    for l, m in enumerate(features, 1):
        if isinstance(m, nn.Conv2d):  # torchvision's VGG init (kaiming normal, fan_out, relu), from our streams
            gen = stream(seed, l, FORWARD)
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            with torch.no_grad():
                m.weight.copy_(torch.empty(m.weight.shape).normal_(0.0, math.sqrt(2.0 / fan_out), generator=gen))
                m.bias.zero_()
    return features.eval(), "random"


class _Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class VGGBlock(nn.Module):
    """A run of VGG16 modules between two cuts, as one probe layer with a mirrored decoder."""

    def __init__(self, modules: list[nn.Module], name: str, in_shape, out_shape, first: bool):
        super().__init__()
        self.layers = nn.Sequential(*modules)
        self.name, self.in_shape, self.out_shape, self.first = name, tuple(in_shape), tuple(out_shape), first

    def forward(self, x):
        return self.layers(x)

    def decoder(self, gen: torch.Generator) -> nn.Module:
        return VGGDecoder([m for m in self.layers if not isinstance(m, _Normalize)], self.in_shape,
                          torch.tanh if self.first else torch.relu, gen)


class VGGDecoder(nn.Module):
    """Mirror of a VGG run: MaxPool2d → nearest ×2 upsampling, Conv2d(c_in→c_out, 3, pad 1) →
    ConvTranspose2d(c_out→c_in, 3, pad 1), ReLU between stages, `final` (tanh or ReLU) at the end;
    cropped/padded to exactly the block's input shape. Init: PyTorch's ConvTranspose2d default,
    drawn from the decoder's stream."""

    def __init__(self, modules: list[nn.Module], in_shape, final, gen: torch.Generator):
        super().__init__()
        self.in_shape, self.final = tuple(in_shape), final
        stages = []
        for m in reversed(modules):
            if isinstance(m, nn.Conv2d):
                k, p = m.kernel_size[0], m.padding[0]
                t = nn.ConvTranspose2d(m.out_channels, m.in_channels, k, stride=m.stride[0], padding=p)
                bound = 1.0 / math.sqrt(m.in_channels * k * k)  # torch's fan_in for a transposed conv
                uniform_(t.weight, bound, gen)
                uniform_(t.bias, bound, gen)
                stages.append(t)
            elif isinstance(m, nn.MaxPool2d):
                s = m.stride if isinstance(m.stride, int) else m.stride[0]
                stages.append(nn.Upsample(scale_factor=s, mode="nearest"))
        self.stages = nn.ModuleList(stages)
        self._learned = [i for i, s in enumerate(stages) if isinstance(s, nn.ConvTranspose2d)]

    def forward(self, h):
        from reconent.science.models import fit_hw

        last = self._learned[-1] if self._learned else -1
        for i, s in enumerate(self.stages):
            h = s(h)
            if isinstance(s, nn.ConvTranspose2d) and i != last:
                h = torch.relu(h)
        return self.final(fit_hw(h, self.in_shape[1:]))


def vgg16_body(features: nn.Sequential, layers, size: int = 224, seed: int = 0) -> Body:
    """Cut VGG16 `features` after each named layer in `layers` (in network order) into a Body.

    The ImageNet normalisation is prepended to the first probe layer (h_0: pixels in [0, 1]).
    Modules after the deepest cut are not used.
    """
    names = vgg16_layer_names(features)
    layers = list(layers)
    unknown = [n for n in layers if n not in names]
    if unknown or not layers:
        raise ValueError(f"unknown VGG16 layer(s) {unknown or layers}; choose from: {', '.join(names)}")
    cuts = sorted(names.index(n) for n in set(layers))
    mods = [nn.ReLU() if isinstance(m, nn.ReLU) else m for m in features]  # no inplace: h_ℓ are kept
    blocks, start, shape = [], 0, (3, size, size)
    for j, c in enumerate(cuts):
        run = ([_Normalize(IMAGENET_MEAN, IMAGENET_STD)] if j == 0 else []) + mods[start:c + 1]
        with torch.no_grad():
            out = tuple(nn.Sequential(*run)(torch.zeros(1, *shape)).shape[1:])
        blocks.append(VGGBlock(run, names[c], shape, out, first=j == 0))
        start, shape = c + 1, out
    body = Body(blocks, (3, size, size), seed, "vgg16")
    return body.requires_grad_(False)


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
        raise ValueError(f"no images ({', '.join(sorted(exts))}) found under {p}")
    order = torch.randperm(len(files), generator=gen)[:max_images]
    out = []
    for i in order.tolist():
        with Image.open(files[i]) as im:
            t = pil_to_tensor(im.convert("RGB")).float().div_(255.0)
        out.append(resize(t, [size, size], antialias=True).clamp_(0, 1))
    return torch.stack(out)


def _dataset_images(name: str, data_root, download: bool, max_images: int, gen) -> torch.Tensor:
    from reconent.science import data as datasets

    if name == "cifar10":
        from torchvision.datasets import CIFAR10

        root = str(Path(data_root if data_root is not None else datasets.default_root()).expanduser())
        try:
            ds = CIFAR10(root, train=True, download=download)
        except (RuntimeError, OSError) as err:
            raise datasets.DatasetNotFound(f"CIFAR10 not found under {root} ({err}); use --download, --data-root, "
                                           f"or a folder of images") from err
        x = torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2)
        idx = torch.randperm(len(x), generator=gen)[:max_images]
        return x[idx].float().div_(255.0)
    if name not in datasets.DATASETS:
        raise ValueError(f"--images must be a folder, 'cifar10' or one of {', '.join(datasets.DATASETS)}; got {name!r}")
    d = datasets.load(name, data_root, download)
    idx = torch.randperm(len(d.train_x), generator=gen)[:max_images]
    return d.train_x[idx]


def channel_probe(body: Body, decoders, x: torch.Tensor, layer: int, channels) -> torch.Tensor:
    """Single-channel probes: h_layer of x with every channel but c zeroed, then g_layer…g_1.

    Returns (len(channels), N, *input shape): the image each channel alone reconstructs.
    """
    with torch.no_grad():
        h = x
        for blk in list(body)[:layer]:
            h = blk(h)
        out = []
        for c in channels:
            z = torch.zeros_like(h)
            z[:, c] = h[:, c]
            for g in reversed(list(decoders)[:layer]):
                z = g(z)
            out.append(z)
    return torch.stack(out)


def explain_vgg16(out_dir, *, images="mnist5k", data_root=None, download: bool = False, weights: str = "imagenet",
                  layers=VGG16_DEFAULT_LAYERS, channels=None, n_channels: int = 6, train_images: int = 256,
                  eval_images: int = 8, epochs: int = 1, batch_size: int = 16, lr: float = 1e-3, size: int = 224,
                  n_show: int = 3, seed: int = 0, device: str = "cpu", log=None, warn=None) -> dict:
    """Train a cascade on VGG16 and write the PNGs; returns the manifest dict (see module doc)."""
    from reconent.analysis.plots import profile_plot
    from reconent.science.probe import probe

    log = log or (lambda msg: None)
    models.device(device)  # fail before training, not after
    if eval_images < 2 or train_images < 1:
        raise ValueError(f"need eval_images >= 2 and train_images >= 1, got {eval_images} and {train_images}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x = load_images(images, data_root=data_root, download=download, size=size, max_images=train_images + eval_images,
                    seed=seed)
    if len(x) <= eval_images:
        raise ValueError(f"{images}: {len(x)} images, but {eval_images} are held out for evaluation; "
                         f"need at least {eval_images + 1}")
    features, got = load_vgg16(weights, seed, warn)
    body = vgg16_body(features, layers, size, seed)
    ev, tr = x[:eval_images], x[eval_images:]
    names = [b.name for b in body]
    log(f"VGG16 ({got} weights), probe layers {', '.join(names)}; {len(tr)} training and {len(ev)} held-out images")
    t0 = time.perf_counter()
    r = probe(body, tr, ev, epochs=epochs, batch_size=batch_size, lr=lr, rtol=0.01, device=device,
              n_show=n_show, eval_chunk=max(2, n_show), per_chunk=1)
    decoders = r.decoders.cpu()
    body = body.cpu()
    figs = []
    shape = (3, size, size)

    titles_row = ["input"] + [f"from {n}" for n in names]
    ex = r.examples
    panels = [[ex[c, i] for c in range(len(names) + 1)] for i in range(ex.shape[1])]
    titles = [titles_row if i == 0 else [""] * len(titles_row) for i in range(len(panels))]
    _grid(out_dir / "vgg16_reconstructions.png", panels, titles,
          f"VGG16 ({got} weights): held-out images and their cascade reconstructions", shape, 1.7)
    figs.append({"path": "vgg16_reconstructions.png", "kind": "reconstructions",
                 "title": f"VGG16 ({got} weights): reconstructions from each probe layer"})

    shown = ev[:n_show]
    for l, name in enumerate(names, 1):
        c_out = body[l - 1].out_shape[0]
        if channels is None:  # the most active channels on the shown images
            with torch.no_grad():
                h = shown
                for blk in list(body)[:l]:
                    h = blk(h)
            chans = h.abs().mean(dim=(0, 2, 3)).argsort(descending=True)[:n_channels].tolist()
        else:
            chans = [c for c in channels if 0 <= c < c_out]
            if not chans:
                raise ValueError(f"none of channels {list(channels)} exists in {name} ({c_out} channels)")
        rec = channel_probe(body, decoders, shown, l, chans).numpy()  # (C, N, 3, H, W)
        panels = [[shown[i].numpy()] + [rec[j, i] for j in range(len(chans))] for i in range(len(shown))]
        titles = [["input"] + [f"{name} ch {c}" for c in chans]] + [[""] * (len(chans) + 1)] * (len(shown) - 1)
        fname = f"vgg16_channels_{name}.png"
        _grid(out_dir / fname, panels, titles,
              f"VGG16 ({got} weights), layer {name}: one channel kept, all others zeroed, decoded to the image",
              shape, 1.7)
        figs.append({"path": fname, "kind": "channels", "layer": name, "channels": chans,
                     "title": f"VGG16 ({got} weights): single-channel probes of {name}"})

    profile_plot(r, out_dir / "vgg16_profile.png", f"VGG16 ({got} weights): probe layers {', '.join(names)}")
    figs.append({"path": "vgg16_profile.png", "kind": "profile",
                 "title": f"VGG16 ({got} weights): reconstruction entropy per probe layer"})
    info = {"model": "vgg16", "weights": got, "images": str(images), "layers": names, "train_images": len(tr),
            "eval_images": len(ev), "epochs": epochs, "seconds": time.perf_counter() - t0,
            "probe": r.summary()}
    return _write_manifest(out_dir, info, figs)


# ---------------------------------------------------------------- CLI
def _ints(s: str) -> list[int]:
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(f"expected comma-separated channel numbers, got {s!r}") from None


def register(sub, bench) -> None:
    from reconent.cli import _num, nonneg, pos_float, pos_int
    from reconent.science.data import DATASETS
    from reconent.science.archs import ACTIVATIONS

    e = sub.add_parser("explain", help="pictures of what each layer keeps: trained MLP or VGG16 cascades")
    es = e.add_subparsers(dest="model", required=True, parser_class=type(e))

    m = es.add_parser("mlp", help="train an MLP, then its cascade: per-layer reconstructions, ideal inputs")
    m.add_argument("-o", "--out", required=True, metavar="DIR", help="folder for the PNGs and manifest.json")
    m.add_argument("--dataset", default="mnist5k", choices=DATASETS)
    m.add_argument("--data-root", default=None)
    m.add_argument("--download", action="store_true")
    m.add_argument("--depth", type=pos_int, default=6)
    m.add_argument("--width", type=pos_int, default=None)
    m.add_argument("--activation", default="tanh", choices=ACTIVATIONS)
    m.add_argument("--sigma-w2", type=nonneg, default=1.76)
    m.add_argument("--sigma-b2", type=nonneg, default=0.05)
    m.add_argument("--seed", type=_num(int, 0), default=0)
    m.add_argument("--train-epochs", type=pos_int, default=5)
    m.add_argument("--train-lr", type=pos_float, default=1e-2, help="SGD lr of the MLP training (default 1e-2)")
    m.add_argument("--train-samples", type=pos_int, default=None)
    m.add_argument("--epochs", type=pos_int, default=1, help="cascade (decoder) epochs")
    m.add_argument("--lr", type=pos_float, default=1e-3, help="decoder Adam lr")
    m.add_argument("--batch-size", type=pos_int, default=64)
    m.add_argument("--probe-samples", type=pos_int, default=None, help="decoder training samples (default all)")
    m.add_argument("--eval-samples", type=_num(int, 2), default=500)
    m.add_argument("--samples", type=pos_int, default=6, help="inputs shown in the reconstruction grid")
    m.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_explain_mlp)

    v = es.add_parser("vgg16", help="VGG16 cascade: per-layer reconstructions and single-channel probes")
    v.add_argument("-o", "--out", required=True, metavar="DIR")
    v.add_argument("--images", default="mnist5k",
                   help="folder of images (ImageFolder or flat), 'cifar10', or a reconent dataset name")
    v.add_argument("--data-root", default=None)
    v.add_argument("--download", action="store_true")
    v.add_argument("--weights", default="imagenet", choices=("imagenet", "random"))
    v.add_argument("--layers", default=",".join(VGG16_DEFAULT_LAYERS),
                   help="comma-separated cut points, e.g. relu1_2,pool1,relu2_2 (conv/relu/pool names)")
    v.add_argument("--channels", type=_ints, default=None, help="channels to probe (default: the most active)")
    v.add_argument("--n-channels", type=pos_int, default=6)
    v.add_argument("--train-images", type=pos_int, default=256)
    v.add_argument("--eval-images", type=_num(int, 2), default=8)
    v.add_argument("--epochs", type=pos_int, default=1)
    v.add_argument("--batch-size", type=pos_int, default=16)
    v.add_argument("--lr", type=pos_float, default=1e-3)
    v.add_argument("--size", type=_num(int, 32), default=224, help="images are resized to size×size")
    v.add_argument("--samples", type=pos_int, default=3, help="images shown")
    v.add_argument("--seed", type=_num(int, 0), default=0)
    v.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_explain_vgg16)


def _report(out: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(out, default=_jsonable))
        return
    for f in out["figures"]:
        print(f"wrote {f['path']}  ({f['title']})")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def cmd_explain_mlp(a) -> None:
    out = explain_mlp(a.out, dataset=a.dataset, data_root=a.data_root, download=a.download, depth=a.depth,
                      width=a.width, activation=a.activation, sigma_w2=a.sigma_w2, sigma_b2=a.sigma_b2, seed=a.seed,
                      train_epochs=a.train_epochs, train_lr=a.train_lr, train_samples=a.train_samples,
                      probe_epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, probe_samples=a.probe_samples,
                      eval_samples=a.eval_samples, n_show=a.samples, device=a.device, log=_say)
    _report(out, a.json)


def cmd_explain_vgg16(a) -> None:
    layers = [s.strip() for s in a.layers.split(",") if s.strip()]
    out = explain_vgg16(a.out, images=a.images, data_root=a.data_root, download=a.download, weights=a.weights,
                        layers=layers, channels=a.channels, n_channels=a.n_channels, train_images=a.train_images,
                        eval_images=a.eval_images, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, size=a.size,
                        n_show=a.samples, seed=a.seed, device=a.device, log=_say)
    _report(out, a.json)
