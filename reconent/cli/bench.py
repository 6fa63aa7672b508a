"""`reconent bench probe` (the probe against the matmul peak) and `reconent bench sweep` (Ray overhead)."""
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
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_probe)

    s = bench.add_parser("sweep", help="orchestration overhead per point on local Ray")
    s.add_argument("--n", type=pos_int, default=50, help="points of each kind (default 50)")
    s.add_argument("--sleep", type=nonneg, default=0.0, help="also time points that sleep this long (s)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_bench_sweep)


def cmd_bench_probe(a) -> None:
    from reconent.bench import bench_probe

    out = bench_probe(a.arch, a.width, a.depth, a.steps, a.batch_size, a.device, channels=a.channels)
    emit(out, a.json, lambda o: print(
        f"probe bench on {o['device']} ({o['device_name']}, {o['threads']} threads): {o['arch']} "
        f"{'width ' + str(o['width']) if o['arch'] == 'mlp' else 'channels ' + str(o['channels'])} "
        f"depth {o['depth']} batch {o['batch_size']}, {o['steps']} steps, {o['path']} path\n"
        f"  {o['ms_per_step']:.1f} ms/step  {o['gflops']:.1f} GFLOP/s  peak matmul {o['peak_gflops']:.1f} GFLOP/s"
        f"  efficiency {o['efficiency']:.2f}"))


def cmd_bench_sweep(a) -> None:
    from reconent.bench import bench_sweep

    emit(bench_sweep(a.n, sleep=a.sleep), a.json, lambda o: print(
        f"bench sweep: {o['n']} points each, local Ray with {o['concurrency']} CPUs, load average "
        f"{o['load_average']:.1f} (Ray start-up {o['ray_start_seconds']:.1f} s, not counted)\n" + "\n".join(
            f"  {k:>7}: wall {o[k]['wall_seconds']:.2f} s, compute {o[k]['compute_seconds']:.2f} s -> overhead "
            f"{o[k]['overhead_per_point']:.3f} s/point (first result after {o[k]['first_result_seconds']:.2f} s"
            + (f", then one every {o[k]['steady_overhead_per_point']:.3f} s" if k == "trivial" else "") + ")"
            for k in ("trivial", "probe", "sleep") if k in o)))
