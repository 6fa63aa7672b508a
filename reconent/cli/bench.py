"""`reconent bench probe` (the probe against the matmul peak), `reconent bench sweep` (Ray overhead) and
`reconent bench search` (the boundary search against a synthetic oracle)."""
from __future__ import annotations

from reconent.cli import Parser, emit, nonneg, pos_int


def register(sub) -> None:
    from reconent.science import archs

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
    b.add_argument("--eval-samples", type=pos_int, default=500, help="evaluation inputs (default 500)")
    b.add_argument("--eval-depths", nargs="+", default=["search", "all"], choices=("search", "all"),
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
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_bench_search)


def cmd_bench_probe(a) -> None:
    from reconent.bench import bench_probe

    out = bench_probe(a.arch, a.width, a.depth, a.steps, a.batch_size, a.device, channels=a.channels,
                      eval_samples=a.eval_samples, eval_depths=tuple(dict.fromkeys(a.eval_depths)))
    emit(out, a.json, lambda o: print(
        f"probe bench on {o['device']} ({o['device_name']}, {o['threads']} threads, load average "
        f"{o['load_average']:.1f}): {o['arch']} "
        f"{'width ' + str(o['width']) if o['arch'] == 'mlp' else 'channels ' + str(o['channels'])} "
        f"depth {o['depth']} batch {o['batch_size']}, {o['steps']} steps, {o['path']} path\n"
        f"  training: {o['train_seconds']:.2f} s, {o['ms_per_step']:.1f} ms/step  {o['gflops']:.1f} GFLOP/s  "
        f"peak matmul {o['peak_gflops']:.1f} GFLOP/s (fp32)  efficiency {o['efficiency']:.2f}\n"
        + "\n".join(f"  evaluation ({m}, {o['eval_samples']} samples): {e['eval_seconds']:.2f} s, "
                    f"{e['evaluated_layers']} of {o['layers']} layers, cutoff {e['cutoff']}" for m, e in o["eval"].items())
        + (f"\n  CUDA peak memory {o['cuda_peak_memory_gib']:.2f} GiB" if o["cuda_peak_memory_gib"] else "")))


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

    out = bench_search(tuple(range(a.seeds)), a.budget, a.resolution, a.batch, prior=not a.no_prior)
    emit(out, a.json, lambda o: print(
        f"bench search: {o['columns']} σ_w² columns, depths {o['depths'][0]}..{o['depths'][1]}, budget "
        f"{o['budget']}, resolution {o['resolution']:g}, {o['batch']} proposals at a time; oracle 6·ξ_c capped, "
        f"noisy labels"
        f"{', noisy probe prior' if o['prior'] else ', no prior'}\n"
        + "\n".join(f"  seed {r['seed']}: trainings {r['trainings']}  median_boundary_error "
                    f"{r['median_boundary_error']:.2f}  max_boundary_error {r['max_boundary_error']:.2f}  "
                    f"seconds {r['seconds']:.2f}" for r in o["runs"])
        + f"\n  worst: trainings {o['trainings']} (grid_trainings {o['grid_trainings']})  median_boundary_error "
          f"{o['median_boundary_error']:.2f}  max_boundary_error {o['max_boundary_error']:.2f}  seconds "
          f"{o['seconds']:.2f}"))
