"""`reconent bench probe` (the probe against the matmul peak and its floor), `reconent bench sweep` (Ray overhead) and
`reconent bench search` (the boundary search against a synthetic oracle)."""
from __future__ import annotations

from reconent.cli import Parser, emit, nonneg, pos_int


def register(sub) -> None:
    from reconent.science import archs
    from reconent.science.data import DATASETS
    from reconent.science.settings import EVAL_DEPTHS, PROBE

    bench = sub.add_parser("bench", help="benchmarks that print numbers").add_subparsers(
        dest="what", required=True, parser_class=Parser)
    b = bench.add_parser("probe", help="time the probe on a paper-sized network against the matmul peak and the "
                         "training's floor")
    b.add_argument("--arch", default="mlp", choices=archs.names())
    b.add_argument("--width", type=pos_int, default=784, help="mlp width")
    b.add_argument("--channels", type=pos_int, default=None, help="cnn/resnet channels (default 128 cnn, 32 resnet)")
    b.add_argument("--depth", type=pos_int, default=30)
    b.add_argument("--steps", type=pos_int, default=100, help="decoder steps (default 100; the probe's own default "
                   "is 938)")
    b.add_argument("--dataset", default=None, choices=DATASETS,
                   help="train on this dataset's training split, cycled for --steps (the cached body activations "
                   "are measured); default: random inputs, one pass")
    b.add_argument("--data-root", default=None, help="torchvision data root (default $RECONENT_DATA or ~/.cache)")
    b.add_argument("--checkpoints", default="none", type=_checkpoints, metavar="auto|none|K,K,...",
                   help="intermediate evaluations, timed apart from the training (default none)")
    b.add_argument("--cache", default="auto", choices=("auto", "on", "off"),
                   help="the body's activations of the split computed once (auto: when the split is cycled)")
    b.add_argument("--batch-size", type=pos_int, default=PROBE.batch_size)
    b.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    b.add_argument("--eval-samples", type=pos_int, default=PROBE.eval_samples,
                   help=f"evaluation inputs (default {PROBE.eval_samples})")
    b.add_argument("--eval-depths", nargs="+", default=["search", "all"], choices=EVAL_DEPTHS,
                   help="evaluation modes to time, each apart from the training (default: search all)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_probe)

    s = bench.add_parser("sweep", help="orchestration overhead per point on local Ray")
    s.add_argument("--n", type=pos_int, default=50, help="points of each kind (default 50)")
    s.add_argument("--sleep", type=nonneg, default=0.0, help="also time points that sleep this long (s)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_bench_sweep)

    q = bench.add_parser("search", help="the boundary search against a synthetic oracle (no training)")
    q.add_argument("--seeds", type=pos_int, default=5, help="oracle seeds 0..N-1 (default 5)")
    q.add_argument("--budget", type=pos_int, default=100, help="trainings allowed (default 100)")
    q.add_argument("--resolution", type=nonneg, default=2.0, help="layers (default 2)")
    q.add_argument("--batch", type=pos_int, default=4, help="proposals at once, the free slots (default 4)")
    q.add_argument("--no-prior", action="store_true", help="ignore the probe prediction (a sweep without probes)")
    q.add_argument("--epochs", type=pos_int, default=100, help="the epoch budget of every training (default 100)")
    q.add_argument("--stop", default="extrapolate", choices=("none", "extrapolate"),
                   help="the stop rule of hopeless trainings, for the search and the grid alike (default extrapolate)")
    q.add_argument("--stop-error", type=_probability, default=0.02,
                   help="how often the rule stops a late riser just below the boundary (default 0.02: the flip rate "
                   "analysis/stop_rule/replay.py allows)")
    q.add_argument("--cost-power", type=nonneg, default=None,
                   help="choose by information per expected second to this power (0: per training, 1: per second; "
                   "default the search's 0.5)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_bench_search)


def _probability(s: str) -> float:
    import argparse

    try:
        v = float(s)
    except ValueError:
        v = -1.0
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"a probability in [0, 1], got {s!r}")
    return v


def _checkpoints(s: str) -> str:
    """--checkpoints: checked now (one line, exit 2); against the budget when the probe runs."""
    import argparse

    from reconent.science.probe import checkpoints_text

    try:
        return checkpoints_text(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_bench_probe(a) -> None:
    from reconent.bench import bench_probe

    out = bench_probe(a.arch, a.width, a.depth, a.steps, a.batch_size, a.device, channels=a.channels,
                      eval_samples=a.eval_samples, eval_depths=tuple(dict.fromkeys(a.eval_depths)),
                      dataset=a.dataset, checkpoints=a.checkpoints, data_root=a.data_root,
                      cache={"auto": None, "on": True, "off": False}[a.cache])
    emit(out, a.json, _probe_table)


def _probe_table(o: dict) -> None:
    print(f"probe bench on {o['device']} ({o['device_name']}, {o['threads']} threads, load average "
          f"{o['load_average']:.1f}): {o['arch']} "
          f"{'width ' + str(o['width']) if o['arch'] == 'mlp' else 'channels ' + str(o['channels'])} "
          f"depth {o['depth']} batch {o['batch_size']}, {o['steps']} steps on "
          f"{o['dataset'] or 'random inputs'} ({o['train_samples']} samples"
          f"{', body activations cached' if o['cached'] else ''}), {o['path']} path")
    print(f"  training: {o['train_seconds']:.2f} s, {o['ms_per_step']:.1f} ms/step  {o['gflops']:.1f} GFLOP/s  "
          f"peak matmul {o['peak_gflops']:.1f} GFLOP/s (fp32)  efficiency {o['efficiency']:.2f}")
    if o["floor_seconds"] is not None:
        print(f"  floor: {o['floor_seconds']:.2f} s (matmuls {o['floor_matmul_seconds']:.2f} s, Adam "
              f"{o['floor_adam_seconds']:.2f} s at {o['bandwidth_gbs']:.1f} GB/s)  training/floor "
              f"{o['floor_ratio']:.2f}"
              + (f"; building the cache took {o['cache_build_seconds']:.2f} s of the training" if o["cached"] else ""))
    if len(o["checkpoint_steps"]) > 1:
        print(f"  checkpoints {o['checkpoints']}: {o['checkpoint_seconds']:.2f} s of intermediate evaluations; "
              "cutoff by steps " + ", ".join(f"{k}: {v}" for k, v in o["cutoff_by_steps"].items()))
    for m, e in o["eval"].items():
        print(f"  evaluation ({m}, {o['eval_samples']} samples): {e['eval_seconds']:.2f} s, "
              f"{e['evaluated_layers']} of {o['layers']} layers, cutoff {e['cutoff']}")
    if o["cuda_peak_memory_gib"]:
        print(f"  CUDA peak memory {o['cuda_peak_memory_gib']:.2f} GiB")


def cmd_bench_sweep(a) -> None:
    from reconent.bench import bench_sweep

    emit(bench_sweep(a.n, sleep=a.sleep), a.json, lambda o: print(
        f"bench sweep: {o['n']} points each, local Ray with {o['concurrency']} CPUs, load average "
        f"{o['load_average']:.1f} (Ray start-up {o['ray_start_seconds']:.1f} s, not counted)\n" + "\n".join(
            f"  {k:>7}: wall {o[k]['wall_seconds']:.2f} s, compute {o[k]['compute_seconds']:.2f} s -> overhead "
            f"{o[k]['overhead_per_point']:.3f} s/point (first result after {o[k]['first_result_seconds']:.2f} s"
            + (f", then one every {o[k]['steady_overhead_per_point']:.3f} s" if k == "trivial" else "") + ")"
            for k in ("trivial", "probe", "sleep") if k in o)))


def cmd_bench_search(a) -> None:
    from reconent.bench import bench_search

    out = bench_search(tuple(range(a.seeds)), a.budget, a.resolution, a.batch, prior=not a.no_prior, epochs=a.epochs,
                       stop=a.stop != "none", stop_error=a.stop_error, cost_power=a.cost_power)
    emit(out, a.json, lambda o: print(
        f"bench search: {o['columns']} σ_w² columns, depths {o['depths'][0]}..{o['depths'][1]}, budget "
        f"{o['budget']}, resolution {o['resolution']:g}, {o['batch']} proposals at a time; oracle 6·ξ_c capped, "
        f"noisy labels"
        f"{', noisy probe prior' if o['prior'] else ', no prior'}; {o['epochs']} epochs, stop rule "
        f"{'on (error ' + format(o['stop_error'], 'g') + ')' if o['stop'] else 'off'}, information per second^"
        f"{o['cost_power']:g}\n"
        + "\n".join(f"  seed {r['seed']}: trainings {r['trainings']}  median_boundary_error "
                    f"{r['median_boundary_error']:.2f}  max_boundary_error {r['max_boundary_error']:.2f}  "
                    f"training_seconds {r['training_seconds']:.0f} (grid {r['grid_training_seconds']:.0f}, "
                    f"{r['seconds_ratio']:.1f}x)  seconds {r['seconds']:.2f}" for r in o["runs"])
        + f"\n  worst: trainings {o['trainings']} (grid_trainings {o['grid_trainings']})  median_boundary_error "
          f"{o['median_boundary_error']:.2f}  max_boundary_error {o['max_boundary_error']:.2f}  training_seconds "
          f"{o['training_seconds']:.0f} (grid_training_seconds {o['grid_training_seconds']:.0f}, "
          f"{o['seconds_ratio']:.1f}x)  seconds {o['seconds']:.2f}"))
