"""`reconent explain mlp|vgg16`: pictures of what each layer keeps of its input (reconent.explain)."""
from __future__ import annotations

import argparse
import json
import sys

from reconent.cli import nonneg, number, pos_float, pos_int


def register(sub) -> None:
    from reconent.science.archs import activations
    from reconent.science.data import DATASETS

    e = sub.add_parser("explain", help="pictures of what each layer keeps: trained MLP or VGG16 cascades")
    es = e.add_subparsers(dest="model", required=True, parser_class=type(e))

    m = es.add_parser("mlp", help="train an MLP, then its cascade: per-layer reconstructions, ideal inputs")
    m.add_argument("-o", "--out", required=True, metavar="DIR", help="folder for the PNGs and manifest.json")
    m.add_argument("--dataset", default="mnist5k", choices=DATASETS)
    m.add_argument("--data-root", default=None)
    m.add_argument("--download", action="store_true")
    m.add_argument("--depth", type=pos_int, default=6)
    m.add_argument("--width", type=pos_int, default=None)
    m.add_argument("--activation", default="tanh", choices=activations())
    m.add_argument("--sigma-w2", type=nonneg, default=1.76)
    m.add_argument("--sigma-b2", type=nonneg, default=0.05)
    m.add_argument("--seed", type=number(int, 0), default=0)
    m.add_argument("--train-epochs", type=pos_int, default=5)
    m.add_argument("--train-lr", type=pos_float, default=1e-2, help="SGD lr of the MLP training (default 1e-2)")
    m.add_argument("--train-samples", type=pos_int, default=None)
    m.add_argument("--epochs", type=pos_int, default=1, help="cascade (decoder) epochs")
    m.add_argument("--lr", type=pos_float, default=1e-3, help="decoder Adam lr")
    m.add_argument("--batch-size", type=pos_int, default=64)
    m.add_argument("--probe-samples", type=pos_int, default=None, help="decoder training samples (default all)")
    m.add_argument("--eval-samples", type=number(int, 2), default=500)
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
    v.add_argument("--layers", default=None,  # None: VGG16_DEFAULT_LAYERS (read when run: it needs torch)
                   help="comma-separated cut points, e.g. relu1_2,pool1,relu2_2 (conv/relu/pool names)")
    v.add_argument("--channels", type=_ints, default=None, help="channels to probe (default: the most active)")
    v.add_argument("--n-channels", type=pos_int, default=6)
    v.add_argument("--train-images", type=pos_int, default=256)
    v.add_argument("--eval-images", type=number(int, 2), default=8)
    v.add_argument("--epochs", type=pos_int, default=1)
    v.add_argument("--batch-size", type=pos_int, default=16)
    v.add_argument("--lr", type=pos_float, default=1e-3)
    v.add_argument("--size", type=number(int, 32), default=224, help="images are resized to size×size")
    v.add_argument("--samples", type=pos_int, default=3, help="images shown")
    v.add_argument("--seed", type=number(int, 0), default=0)
    v.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_explain_vgg16)


def _ints(s: str) -> list[int]:
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated channel numbers, got {s!r}") from None


def _report(out: dict, as_json: bool) -> None:
    from reconent.explain.output import jsonable

    if as_json:
        print(json.dumps(out, default=jsonable))
        return
    for f in out["figures"]:
        print(f"wrote {f['path']}  ({f['title']})")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def cmd_explain_mlp(a) -> None:
    from reconent.explain import explain_mlp

    out = explain_mlp(a.out, dataset=a.dataset, data_root=a.data_root, download=a.download, depth=a.depth,
                      width=a.width, activation=a.activation, sigma_w2=a.sigma_w2, sigma_b2=a.sigma_b2, seed=a.seed,
                      train_epochs=a.train_epochs, train_lr=a.train_lr, train_samples=a.train_samples,
                      probe_epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, probe_samples=a.probe_samples,
                      eval_samples=a.eval_samples, n_show=a.samples, device=a.device, log=_say)
    _report(out, a.json)


def cmd_explain_vgg16(a) -> None:
    from reconent.explain import VGG16_DEFAULT_LAYERS, explain_vgg16

    layers = VGG16_DEFAULT_LAYERS if a.layers is None else [s.strip() for s in a.layers.split(",") if s.strip()]
    out = explain_vgg16(a.out, images=a.images, data_root=a.data_root, download=a.download, weights=a.weights,
                        layers=layers, channels=a.channels, n_channels=a.n_channels, train_images=a.train_images,
                        eval_images=a.eval_images, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, size=a.size,
                        n_show=a.samples, seed=a.seed, device=a.device, log=_say)
    _report(out, a.json)
