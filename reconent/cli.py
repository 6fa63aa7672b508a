"""The `reconent` command line. Other tools script it: keep flag and JSON key names stable.

Each command lives in a `cmd_*` function; bad input raises `UsageError` (one line, exit 2).
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

# Modules that add their own sub-commands through `register(subparsers, bench_subparsers)`.
PLUGINS: list[str] = ["reconent.analysis.report", "reconent.sweep.tune", "reconent.explain"]


class UsageError(Exception):
    """Bad user input: printed as one line `reconent: error: ...`, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage plus the error; we want one line
        raise UsageError(message)


def _num(kind, lo=None, strict=False):
    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {s!r}") from None
        if lo is not None and (v <= lo if strict else v < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {lo}, got {s}")
        return v
    parse.__name__ = kind.__name__
    return parse


pos_int = _num(int, 1)
nonneg = _num(float, 0.0)
pos_float = _num(float, 0.0, strict=True)


def _emit(obj: dict, as_json: bool, table) -> None:
    if as_json:
        print(json.dumps(obj))
    else:
        table(obj)


# ---------------------------------------------------------------- probe
def add_probe_args(p) -> None:
    from reconent.science import archs
    from reconent.science.data import DATASETS

    p.add_argument("--dataset", default="mnist5k", choices=DATASETS)
    p.add_argument("--data-root", default=None, help="torchvision data root (default $RECONENT_DATA or ~/.cache)")
    p.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    p.add_argument("--arch", default="mlp", choices=archs.names())
    p.add_argument("--width", type=pos_int, default=None, help="MLP hidden width (default: input size)")
    p.add_argument("--channels", type=pos_int, default=None, help="conv channels (default: the arch's, "
                   + ", ".join(f"{a.name} {a.default_size}" for a in map(archs.get, archs.names()) if a.size == "channels") + ")")
    p.add_argument("--activation", default="tanh", choices=archs.ACTIVATIONS)
    p.add_argument("--depth", type=pos_int, default=30)
    p.add_argument("--sigma-w2", type=nonneg, default=1.76)
    p.add_argument("--sigma-b2", type=nonneg, default=0.05)
    p.add_argument("--seed", type=_num(int, 0), default=0)
    p.add_argument("--epochs", type=pos_int, default=1)
    p.add_argument("--batch-size", type=pos_int, default=64)
    p.add_argument("--lr", type=pos_float, default=1e-3)
    p.add_argument("--rtol", type=pos_float, default=None, help="cutoff tolerance (default: the arch's, "
                   + ", ".join(f"{n} {archs.get(n).rtol:g}" for n in archs.names()) + ")")
    p.add_argument("--train-samples", type=pos_int, default=None, help="default: the whole training split")
    p.add_argument("--eval-samples", type=_num(int, 2), default=500)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))


def run_probe(a) -> tuple[dict, object, object]:
    """Shared by `probe` and later commands: load data, build the body, probe. Returns summary, result, data."""
    from reconent.science import archs
    from reconent.science import data as datasets
    from reconent.science.probe import probe

    d = datasets.load(a.dataset, a.data_root, a.download)
    body = archs.build(a.arch, a.depth, d.shape, seed=a.seed, sigma_w2=a.sigma_w2, sigma_b2=a.sigma_b2,
                       activation=a.activation, **{k: getattr(a, k) for k in archs.SIZES})
    rtol = a.rtol if a.rtol is not None else archs.get(a.arch).rtol
    r = probe(body, d.train_x, d.test_x, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, rtol=rtol,
              train_samples=a.train_samples, eval_samples=a.eval_samples, device=a.device)
    point = {k: getattr(a, k) for k in ("dataset", "arch", "width", "channels", "activation", "depth", "sigma_w2",
                                        "sigma_b2", "seed")}
    return {**point, **r.summary()}, r, d


def cmd_probe(a) -> None:
    from reconent.analysis.plots import profile_plot, reconstructions_plot

    out, r, d = run_probe(a)
    title = f"{a.arch} on {a.dataset}: σ_w²={a.sigma_w2:g}, σ_b²={a.sigma_b2:g}, depth {a.depth}, seed {a.seed}"
    if a.plot:
        profile_plot(r, a.plot, title)
        out["plot"] = a.plot
    if a.reconstructions:
        reconstructions_plot(r, a.reconstructions, d.shape[1:] if d.shape[0] == 1 else None)
        out["reconstructions"] = a.reconstructions
    _emit(out, a.json, _probe_table)


def _probe_table(o: dict) -> None:
    print(f"{o['arch']} {o['dataset']}  σ_w²={o['sigma_w2']:g} σ_b²={o['sigma_b2']:g} depth={o['depth']} "
          f"seed={o['seed']}  status={o['status']}  ({o['seconds']:.1f} s on {o['device']}, {o['path']} path)")
    print(f"{'layer':>5} {'S median':>10} {'S q25':>9} {'S q75':>9} {'S/S_L':>8} {'H diff':>9} {'dec loss':>9}")
    for i in range(o["layers"]):
        print(f"{i + 1:>5} {o['relative_entropy_median'][i]:>10.5f} {o['relative_entropy_q25'][i]:>9.5f} "
              f"{o['relative_entropy_q75'][i]:>9.5f} {o['relative_entropy_norm_median'][i]:>8.4f} "
              f"{o['differential_entropy'][i]:>9.3f} {o['decoder_loss'][i]:>9.5f}")
    print(f"cutoff (rtol {o['rtol']:g}): layer {o['cutoff']}  -> predicted maximum trainable depth")
    for k in ("plot", "reconstructions"):
        if k in o:
            print(f"wrote {o[k]}")


# ---------------------------------------------------------------- theory
def cmd_theory(a) -> None:
    from reconent.science import theory

    out = {"activation": a.activation, "sigma_b2": a.sigma_b2,
           "critical_sigma_w2": theory.critical_sigma_w2(a.sigma_b2, activation=a.activation)}
    if a.sigma_w2 is not None:
        mf = theory.mean_field(a.sigma_w2, a.sigma_b2, activation=a.activation)
        out.update(sigma_w2=a.sigma_w2, **mf, trainable_depth=6.0 * mf["xi_c"])
    _emit(out, a.json, lambda o: [print(f"{k:>18}: {v}") for k, v in o.items()])


# ---------------------------------------------------------------- bench
def cmd_bench_probe(a) -> None:
    from .bench import bench_probe

    out = bench_probe(a.arch, a.width, a.depth, a.steps, a.batch_size, a.device, channels=a.channels)
    _emit(out, a.json, lambda o: print(
        f"probe bench on {o['device']} ({o['device_name']}, {o['threads']} threads): {o['arch']} "
        f"{'width ' + str(o['width']) if o['arch'] == 'mlp' else 'channels ' + str(o['channels'])} "
        f"depth {o['depth']} batch {o['batch_size']}, {o['steps']} steps, {o['path']} path\n"
        f"  {o['ms_per_step']:.1f} ms/step  {o['gflops']:.1f} GFLOP/s  peak matmul {o['peak_gflops']:.1f} GFLOP/s"
        f"  efficiency {o['efficiency']:.2f}"))


# ---------------------------------------------------------------- main
def parser() -> Parser:
    from reconent.science import archs

    p = Parser(prog="reconent", description="Predict which initialisations and depths of a network will train, "
               "with the cascade reconstruction-entropy probe (arXiv:2406.12916).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    q = sub.add_parser("probe", help="run the cascade probe on one network")
    add_probe_args(q)
    q.add_argument("--plot", metavar="PNG", help="write the entropy profile figure")
    q.add_argument("--reconstructions", metavar="PNG", help="write inputs and reconstructions from several depths")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=cmd_probe)

    t = sub.add_parser("theory", help="mean-field quantities: critical σ_w², χ₁, ξ_c, q*, c*")
    t.add_argument("--sigma-b2", type=nonneg, default=0.05)
    t.add_argument("--sigma-w2", type=nonneg, default=None)
    t.add_argument("--activation", default="tanh", choices=archs.ACTIVATIONS)
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_theory)

    bench = sub.add_parser("bench", help="benchmarks that print numbers").add_subparsers(
        dest="what", required=True, parser_class=Parser)
    b = bench.add_parser("probe", help="time the probe on a paper-sized network against the matmul peak")
    b.add_argument("--arch", default="mlp", choices=archs.names())
    b.add_argument("--width", type=pos_int, default=784, help="mlp width")
    b.add_argument("--channels", type=pos_int, default=None, help="cnn/resnet channels (default 128 cnn, 32 resnet)")
    b.add_argument("--depth", type=pos_int, default=30)
    b.add_argument("--steps", type=pos_int, default=100)
    b.add_argument("--batch-size", type=pos_int, default=64)
    b.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_probe)

    # Commands that live next to their code: each module has register(sub, bench).
    for name in PLUGINS:
        importlib.import_module(name).register(sub, bench)
    return p


def main(argv: list[str] | None = None) -> int:
    from reconent.science.data import DatasetNotFound

    try:
        args = parser().parse_args(argv)
        args.func(args)
    except (UsageError, DatasetNotFound) as e:
        print(f"reconent: error: {e}".replace("\n", " "), file=sys.stderr)
        return 2
    except ValueError as e:  # raised by the library on impossible settings
        print(f"reconent: error: {e}".replace("\n", " "), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
