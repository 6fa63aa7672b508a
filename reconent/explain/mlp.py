"""``explain_mlp``: train an MLP with its head, then the cascade with the head as one more probe layer.

The trained head becomes ``HeadBlock`` (logits = W h_L + b, no activation), so its decoder
logits → h_L is trained with the cascade, in the same mini-batches and with the same Adam, as
every other decoder. Figures: the input and its reconstructions from every layer and from the
logits; the "ideal input" of each class (``ideal_inputs``); the entropy profile.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from reconent.science import models
from reconent.science.models import Body, LinearDecoder

from .output import grid, write_manifest


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
    from reconent.science.archs import build
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
    model = tr.model.cpu()  # train() leaves `body` untrained: the cascade reads the trained copy
    full = Body(list(model.body) + [HeadBlock(model.head)], body.in_shape, seed, "mlp")
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
    grid(out_dir / "mlp_reconstructions.png", panels, titles,
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
    grid(out_dir / "mlp_ideal_inputs.png", panels, titles,
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
    return write_manifest(out_dir, info, figs)
