"""``explain_vgg16``: the cascade on torchvision VGG16 ``features``, cut into probe layers after named layers.

A probe layer is the run of VGG modules since the previous cut (``VGGBlock``); its decoder
(``VGGDecoder``) mirrors it backwards. Figures: per-layer reconstructions, single-channel probes
(``channel_probe``), the entropy profile. See the package docstring for the details.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

from reconent.errors import UserError

from reconent.science import models
from reconent.science.models import FORWARD, Body, uniform_, stream

from .images import load_images
from .output import grid, write_manifest


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
        raise UserError(f"weights must be 'imagenet' or 'random', got {weights!r}")
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
        raise UserError(f"unknown VGG16 layer(s) {unknown or layers}; choose from: {', '.join(names)}")
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
        raise UserError(f"need eval_images >= 2 and train_images >= 1, got {eval_images} and {train_images}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x = load_images(images, data_root=data_root, download=download, size=size, max_images=train_images + eval_images,
                    seed=seed)
    if len(x) <= eval_images:
        raise UserError(f"{images}: {len(x)} images, but {eval_images} are held out for evaluation; "
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
    grid(out_dir / "vgg16_reconstructions.png", panels, titles,
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
                raise UserError(f"none of channels {list(channels)} exists in {name} ({c_out} channels)")
        rec = channel_probe(body, decoders, shown, l, chans).numpy()  # (C, N, 3, H, W)
        panels = [[shown[i].numpy()] + [rec[j, i] for j in range(len(chans))] for i in range(len(shown))]
        titles = [["input"] + [f"{name} ch {c}" for c in chans]] + [[""] * (len(chans) + 1)] * (len(shown) - 1)
        fname = f"vgg16_channels_{name}.png"
        grid(out_dir / fname, panels, titles,
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
    return write_manifest(out_dir, info, figs)
