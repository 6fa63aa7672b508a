"""`reconent probe` (the cascade probe on one network) and `reconent theory` (mean-field quantities)."""
from __future__ import annotations

from reconent.cli import emit, nonneg, number, pos_float, pos_int


def register(sub) -> None:
    from reconent.science import archs

    q = sub.add_parser("probe", help="run the cascade probe on one network")
    add_probe_args(q)
    q.add_argument("--plot", metavar="PNG", help="write the entropy profile figure")
    q.add_argument("--reconstructions", metavar="PNG", help="write inputs and reconstructions from several depths")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=cmd_probe)

    t = sub.add_parser("theory", help="mean-field quantities: critical σ_w², χ₁, ξ_c, q*, c*")
    t.add_argument("--sigma-b2", type=nonneg, default=0.05)
    t.add_argument("--sigma-w2", type=nonneg, default=None)
    from reconent.science.theory import ACTIVATIONS as MEAN_FIELD  # the theory's maths: not every registered φ

    t.add_argument("--activation", default="tanh", choices=tuple(MEAN_FIELD))
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_theory)


# ---------------------------------------------------------------- probe
def add_probe_args(p) -> None:
    from reconent.science import archs
    from reconent.science.data import DATASETS
    from reconent.science.settings import ENTROPY_DTYPES, EVAL_DEPTHS, PROBE

    p.add_argument("--dataset", default="mnist5k", choices=DATASETS)
    p.add_argument("--data-root", default=None, help="torchvision data root (default $RECONENT_DATA or ~/.cache)")
    p.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    p.add_argument("--arch", default="mlp", choices=archs.names())
    p.add_argument("--width", type=pos_int, default=None, help="MLP hidden width (default: input size)")
    p.add_argument("--channels", type=pos_int, default=None, help="conv channels (default: the arch's, "
                   + ", ".join(f"{a.name} {a.default_size}" for a in map(archs.get, archs.names()) if a.size == "channels") + ")")
    p.add_argument("--activation", default="tanh", choices=archs.activations())
    p.add_argument("--depth", type=pos_int, default=30)
    p.add_argument("--sigma-w2", type=nonneg, default=1.76)
    p.add_argument("--sigma-b2", type=nonneg, default=0.05)
    p.add_argument("--seed", type=number(int, 0), default=0)
    from reconent.science.budget import DEFAULT_STEPS

    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=pos_int, default=None,
                        help=f"decoder budget in Adam steps (default {DEFAULT_STEPS}: one epoch of the 60,000-image "
                        "MNIST; a smaller split is cycled in reshuffled passes)")
    budget.add_argument("--epochs", type=pos_int, default=None,
                        help="the decoder budget as passes over the training split instead (--epochs 1: 63 steps on "
                        "mnist5k)")
    p.add_argument("--checkpoints", default=PROBE.checkpoints, type=_checkpoints, metavar="auto|none|K,K,...",
                   help="also evaluate the cascade after these steps (default auto: steps/16, steps/4 and steps)")
    p.add_argument("--batch-size", type=pos_int, default=PROBE.batch_size)
    p.add_argument("--lr", type=pos_float, default=PROBE.lr)
    p.add_argument("--rtol", type=pos_float, default=None, help="cutoff tolerance (default: the arch's, "
                   + ", ".join(f"{n} {archs.get(n).rtol:g}" for n in archs.names()) + ")")
    p.add_argument("--train-samples", type=pos_int, default=None, help="default: the whole training split")
    p.add_argument("--eval-samples", type=number(int, 2), default=PROBE.eval_samples)
    p.add_argument("--eval-depths", default=PROBE.eval_depths_cli, choices=EVAL_DEPTHS,
                   help=f"search: a sparse grid of depths, then finer grids around the cutoff, down to every layer; "
                   f"all: every cascade, O(depth²) (default {PROBE.eval_depths_cli}; docs/performance.md, 'Deep probes')")
    p.add_argument("--entropy-dtype", default=PROBE.entropy_dtype, choices=ENTROPY_DTYPES)
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on CUDA (default: plain fp32)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))


def _checkpoints(s: str):
    """--checkpoints: checked now (one line, exit 2); checked against the budget once it is known."""
    import argparse

    from reconent.science.budget import parse_checkpoints

    try:
        return parse_checkpoints(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def run_probe(a) -> tuple[dict, object, object]:
    """Shared by `probe` and later commands: load data, build the body, probe. Returns summary, result, data."""
    from reconent.science import archs
    from reconent.science import data as datasets
    from reconent.science.probe import probe

    d = datasets.load(a.dataset, a.data_root, a.download)
    body = archs.build(a.arch, a.depth, d.shape, seed=a.seed, sigma_w2=a.sigma_w2, sigma_b2=a.sigma_b2,
                       activation=a.activation, **{k: getattr(a, k, None) for k in archs.sizes()})
    r = probe(body, d.train_x, d.test_x, steps=a.steps, epochs=a.epochs, checkpoints=a.checkpoints,
              batch_size=a.batch_size, lr=a.lr, rtol=a.rtol,
              train_samples=a.train_samples, eval_samples=a.eval_samples, device=a.device,
              eval_depths=a.eval_depths, entropy_dtype=a.entropy_dtype, tf32=a.tf32)
    point = {k: getattr(a, k) for k in ("dataset", "arch", "width", "channels", "activation", "depth", "sigma_w2",
                                        "sigma_b2", "seed")}
    return {**point, **r.summary()}, r, d


def cmd_probe(a) -> None:
    out, r, d = run_probe(a)
    if a.plot or a.reconstructions:  # matplotlib only when a figure is asked for
        from reconent.analysis.plots import profile_plot, reconstructions_plot
    title = f"{a.arch} on {a.dataset}: σ_w²={a.sigma_w2:g}, σ_b²={a.sigma_b2:g}, depth {a.depth}, seed {a.seed}"
    if a.plot:
        profile_plot(r, a.plot, title)
        out["plot"] = a.plot
    if a.reconstructions:
        reconstructions_plot(r, a.reconstructions, d.shape[1:] if d.shape[0] == 1 else None)
        out["reconstructions"] = a.reconstructions
    emit(out, a.json, _probe_table)


def _probe_table(o: dict) -> None:
    print(f"{o['arch']} {o['dataset']}  σ_w²={o['sigma_w2']:g} σ_b²={o['sigma_b2']:g} depth={o['depth']} "
          f"seed={o['seed']}  status={o['status']}  ({o['seconds']:.1f} s on {o['device']}: training "
          f"{o['train_seconds']:.1f} s, evaluation {o['eval_seconds']:.1f} s; {o['path']} path)")
    if o["evaluated_layers"] < o["layers"]:
        print(f"eval-depths {o['eval_depths']}: {o['evaluated_layers']} of {o['layers']} layers evaluated "
              "(coarse to fine around the cutoff); --eval-depths all for every layer")
    print(f"{'layer':>5} {'S median':>10} {'S q25':>9} {'S q75':>9} {'S/S_L':>8} {'H diff':>9} {'dec loss':>9}")
    for i in range(o["layers"]):
        if o["relative_entropy_median"][i] is None:  # not evaluated (--eval-depths search)
            continue
        print(f"{i + 1:>5} {o['relative_entropy_median'][i]:>10.5f} {o['relative_entropy_q25'][i]:>9.5f} "
              f"{o['relative_entropy_q75'][i]:>9.5f} {o['relative_entropy_norm_median'][i]:>8.4f} "
              f"{o['differential_entropy'][i]:>9.3f} {o['decoder_loss'][i]:>9.5f}")
    print(f"cutoff (rtol {o['rtol']:g}): layer {o['cutoff']}  -> predicted maximum trainable depth, after "
          f"{o['steps_run']} decoder steps")
    if len(o["cutoff_by_steps"]) > 1:
        print("cutoff by decoder steps: " + ", ".join(f"{k}: {v}" for k, v in o["cutoff_by_steps"].items())
              + f" (intermediate evaluations {o['checkpoint_seconds']:.1f} s)")
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
    emit(out, a.json, lambda o: [print(f"{k:>18}: {v}") for k, v in o.items()])
