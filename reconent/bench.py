"""Benchmarks that print numbers (never timed tests): `reconent bench probe` and `reconent bench sweep`."""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import torch

from reconent.science import archs
from reconent.science.models import Dense
from reconent.science.probe import _stacked_activations, probe
from reconent.science.settings import PROBE


def matmul_peak(device: torch.device, sizes=None, seconds: float = 0.5) -> float:
    """The machine's plain fp32 matmul throughput in GFLOP/s: the best over a few square sizes.

    On CUDA, TF32 is off while it runs (the fp32 peak the probe is held to) and the host syncs once
    per batch of `burst` products, not after each, so launch latency does not lower the peak.
    """
    from reconent.science.probe import _tf32

    cuda = device.type == "cuda"
    sizes = sizes or ((1024, 2048, 4096, 8192) if cuda else (784, 1024, 2048))
    burst = 20 if cuda else 1
    best = 0.0
    with _tf32(device, False):
        for n in sizes:
            a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
            out = torch.empty(n, n, device=device)
            for _ in range(3):  # warm up threads and caches
                torch.mm(a, b, out=out)
            if cuda:
                torch.cuda.synchronize(device)
            reps, t = 0, time.perf_counter()
            while True:
                for _ in range(burst):
                    torch.mm(a, b, out=out)
                reps += burst
                if cuda:
                    torch.cuda.synchronize(device)
                dt = time.perf_counter() - t
                if dt > seconds:
                    break
            best = max(best, 2 * n**3 * reps / dt / 1e9)
    return best


def probe_flops_per_step(body, batch_size: int) -> float:
    """Matmul work of one probe step: per Dense layer the forward, the decoder forward and the
    decoder weight gradient, each 2·B·n_in·n_out flops (elementwise work and Adam not counted).

    Conv blocks count the same three terms through their `probe_flops(B)`: the conv forward,
    2·B·C_out·H_conv·W_conv·C_in·k² (H_conv: the conv's own output, before circular padding),
    then the transposed-conv decoder's forward and its weight gradient, each 2·B·C_out·H_out·W_out·C_in·k²
    (H_out: the block's output, the decoder's input). That is ≈ 3 × 2·B·C_out·H·W·C_in·k² per conv.
    A residual block has two convs and a two-stage decoder, whose first stage also needs the
    input gradient of the second: 2 + 5 such terms. Padding, tanh, bias and Adam are not counted.
    """
    return sum(b.probe_flops(batch_size) for b in body)


def bench_probe(arch: str = "mlp", width: int | None = 784, depth: int = 30, steps: int = 100,
                batch_size: int = PROBE.batch_size, device: str = "cpu", stacked: bool | None = None,
                channels: int | None = None, image: tuple[int, int, int] = (1, 28, 28),
                eval_samples: int = PROBE.eval_samples,
                eval_depths: tuple[str, ...] = ("search", "all"), dataset: str | None = None,
                checkpoints: str = "none", cache: bool | None = None, data_root=None) -> dict:
    """Time the probe's training loop on a paper-sized body, its evaluation, then the matmul peak and the
    training's floor in the same process.

    mlp: `width` inputs and hidden units (stacked path). cnn/resnet: `channels` (default 128/32)
    on MNIST-shaped images `image`, at the Xiao et al. point σ_w² = 1.05, σ_b² = 2e-5
    (generic path); `depth` counts the blocks after the 3-layer stem.
    dataset None: random inputs, `steps` mini-batches of them (one pass, the body recomputed every step).
    dataset "mnist5k" (any name `reconent.science.data.load` knows): its training split, cycled in reshuffled
    passes for `steps` steps, so the cached body activations (`cache`, automatic when cycled) are measured;
    evaluation on `eval_samples` of its test split. `checkpoints` ("none" by default, so the training time is
    clean) adds intermediate evaluations, timed apart (`checkpoint_seconds`).
    Evaluation runs once per mode in `eval_depths` ("search", the default of the probe, and "all", every
    cascade), each timed apart from the training; on CUDA the peak is the fp32 peak (TF32 off) and
    `cuda_peak_memory_gib` the most the probe held.

    The floor (stacked path only; `probe_floor`): the step's batched decoder matmuls at the best speed torch
    reaches on exactly their shapes, the body's forward too when it is not cached, plus Adam's 7 passes over
    the decoders at the copy bandwidth measured here. `floor_ratio` = train_seconds / floor_seconds.
    `gflops` counts the matmul work done: for a cached MLP the decoders' two matmuls per step and the body's
    forward over the split once; otherwise the three of `probe_flops_per_step`.
    """
    dev = torch.device(device)
    a = archs.get(arch)
    if dataset is None:
        # The paper's setting of the architecture; an MLP's input is as wide as its hidden layers.
        in_shape = (width or a.bench["in_shape"][0],) if a.size == "width" else tuple(image or a.bench["in_shape"])
    else:
        from reconent.science import data as datasets

        d = datasets.load(dataset, data_root)
        in_shape = d.shape
    size = {"width": width, "channels": channels}.get(a.size)  # another setting: the arch's default
    body = archs.build(arch, depth, in_shape, sigma_w2=a.bench["sigma_w2"], sigma_b2=a.bench["sigma_b2"], seed=0,
                       **{a.size: size})
    gen = torch.Generator().manual_seed(0)
    if dataset is None:
        x = torch.rand(steps * batch_size, *in_shape, generator=gen)
        ev = torch.rand(eval_samples, *in_shape, generator=gen)
    else:
        x, ev = d.train_x, d.test_x[torch.randperm(len(d.test_x), generator=gen)[:eval_samples]]
    kw = dict(batch_size=batch_size, device=dev, stacked=stacked, cache=cache)
    probe(body, x[: 4 * batch_size], ev[:8], steps=2, checkpoints="none", **kw)  # warm-up
    # The bandwidth of a VM's memory drifts by tens of percent within minutes: measured before and after the
    # training, the floor takes the better one (a stricter floor).
    bandwidth = copy_bandwidth(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    runs = {mode: probe(body, x, ev, steps=steps, checkpoints=checkpoints, eval_depths=mode, **kw)
            for mode in eval_depths or ("search",)}
    evals = {m: {"eval_seconds": q.seconds - q.train_seconds - q.checkpoint_seconds,
                 "evaluated_layers": int(q.evaluated.sum()), "cutoff": q.cutoff()} for m, q in runs.items()}
    r = next(iter(runs.values()))  # the training is the same in each run: the first one's is reported
    per_step = probe_flops_per_step(body, batch_size)
    dense = all(isinstance(b, Dense) for b in body)
    work = (per_step * 2 / 3 * r.steps_run + per_step / 3 / batch_size * len(x)) if r.cached and dense \
        else per_step * r.steps_run
    gflops = work / r.train_seconds / 1e9
    peak_memory = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    del runs  # the decoders: memory for the floor's operands
    peak = matmul_peak(dev)
    floor = probe_floor(len(body), body[0].n_in, batch_size, dev, r.cached, bandwidth=bandwidth) \
        if r.path == "stacked" else None
    f = {k: None for k in ("floor_seconds", "floor_ratio", "floor_matmul_seconds", "floor_adam_seconds",
                           "bandwidth_gbs", "bandwidth_gbs_measured", "cache_build_seconds")}
    if floor:
        mm, adam = floor["matmul_seconds"] * r.steps_run, floor["adam_seconds"] * r.steps_run
        f = {"floor_seconds": mm + adam, "floor_ratio": r.train_seconds / (mm + adam), "floor_matmul_seconds": mm,
             "floor_adam_seconds": adam, "bandwidth_gbs": floor["bandwidth_gbs"],
             "bandwidth_gbs_measured": [bandwidth, floor["bandwidth_measured_gbs"]], "cache_build_seconds": None}
        if r.cached:  # part of train_seconds, once per probe, not in the floor: timed apart
            t = time.perf_counter()
            _stacked_activations(body, x.to(dev), dev)
            f["cache_build_seconds"] = time.perf_counter() - t
    # FLOPs are nominal (direct convolution). oneDNN's 3×3 conv kernels beat torch.mm's plain sgemm on
    # some CPUs (measured here: ~270-340 against ~200 GFLOP/s), so a conv probe's ratio can exceed 1.
    return {
        "bench": "probe", "device": str(dev), "device_name": _device_name(dev), "threads": torch.get_num_threads(),
        "arch": arch, "width": width if a.size == "width" else None,
        "channels": body[0].out_shape[0] if a.size == "channels" else None, "layers": len(body), "depth": depth,
        "dataset": dataset, "train_samples": len(x), "cached": bool(r.cached),
        "batch_size": batch_size, "steps": r.steps_run, "path": r.path,
        "ms_per_step": 1e3 * r.train_seconds / r.steps_run, "train_seconds": r.train_seconds,
        "probe_seconds": r.seconds, **f,
        "checkpoints": r.settings["checkpoints"], "checkpoint_steps": r.checkpoint_steps,
        "checkpoint_seconds": r.checkpoint_seconds, "cutoff_by_steps": r.cutoff_by_steps(),
        "eval_samples": len(ev), "eval": evals,
        "eval_seconds": evals[next(iter(evals))]["eval_seconds"],
        "gflops": gflops, "peak_gflops": peak, "efficiency": gflops / peak, "torch": torch.__version__,
        "cuda_peak_memory_gib": peak_memory, "tf32": False, "load_average": os.getloadavg()[0],
    }


def _best(fn, device: torch.device, reps: int = 5) -> float:
    """The fastest of `reps` timed runs of fn(), after one untimed run."""
    cuda = device.type == "cuda"
    fn()
    best = float("inf")
    for _ in range(reps):
        if cuda:
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t)
    return best


def copy_bandwidth(device: torch.device, nbytes: int = 2**29) -> float:
    """Memory bandwidth in GB/s: bytes read and written by a large `Tensor.copy_`, best of a few."""
    src = torch.rand(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    return 2 * nbytes / _best(lambda: dst.copy_(src), device, reps=10) / 1e9


def probe_floor(L: int, w: int, batch_size: int, device: torch.device, cached: bool, per_chunk: int = 8,
                bandwidth: float = 0.0) -> dict:
    """Seconds per step below which the stacked probe's training cannot go on this machine, measured now.

    matmul_seconds: the decoders' forward, L×(B×w @ w×w), and weight gradient, L×(w×B @ B×w), each at the best
    speed torch reaches on exactly these shapes (as one batched matmul or as L plain ones, whichever is faster),
    plus, when the body's activations are not cached, its forward L×(B·per_chunk×w @ w×w) per `per_chunk` steps.
    adam_seconds: Adam's ~7 passes over the decoders' L·w·w + L·w floats (read parameter, gradient and both
    moments; write parameter and moments) at the bandwidth of a large copy (`bandwidth_gbs`: the better of
    the one measured here and `bandwidth`, one measured earlier in the process). A copy's stores also read
    their lines first, so a fused Adam can beat this figure (measured here: 45-92 GB/s against a 38-61 GB/s
    copy); the Adam term of the floor is lenient.
    Elementwise work (tanh, the residual, the gather) is not in the floor: it is what the ratio measures.
    """
    B, span = batch_size, batch_size * per_chunk
    g = torch.Generator(device=device).manual_seed(0)
    h = torch.rand(L, B, w, device=device, generator=g)
    D = torch.randn(L, w, w, device=device, generator=g)
    c = torch.zeros(L, 1, w, device=device)
    out = torch.empty(L, B, w, device=device)
    fwd = min(_best(lambda: torch.baddbmm(c, h, D.transpose(1, 2), out=out), device),
              _best(lambda: torch.bmm(h, D.transpose(1, 2), out=out), device))
    grad = torch.empty(L, w, w, device=device)

    def grad_loop():
        for l in range(L):
            torch.addmm(grad[l], out[l].t(), h[l], beta=0.0, out=grad[l])

    wgrad = min(_best(lambda: torch.bmm(out.transpose(1, 2), h, out=grad), device), _best(grad_loop, device))
    body = 0.0
    if not cached:
        hc, o, b = torch.rand(span, w, device=device, generator=g), torch.empty(span, w, device=device), c[0, 0]

        def body_loop():
            for l in range(L):
                torch.addmm(b, hc, D[l], out=o)

        body = min(_best(body_loop, device, reps=3) / per_chunk, fwd)
    del h, D, out, grad
    measured = copy_bandwidth(device)
    bandwidth = max(bandwidth, measured)
    return {"matmul_seconds": fwd + wgrad + body, "adam_seconds": 7 * 4 * (L * w * w + L * w) / (bandwidth * 1e9),
            "bandwidth_gbs": bandwidth, "bandwidth_measured_gbs": measured, "decoder_forward_seconds": fwd,
            "weight_gradient_seconds": wgrad, "body_forward_seconds": body}


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    import platform

    return platform.processor() or platform.machine()


def bench_sweep(n: int = 50, num_cpus: int | None = None, progress: bool = False, sleep: float = 0.0) -> dict:
    """Orchestration overhead per point on a local Ray, for trivial points and tiny real probe points.

    overhead_per_point = (wall of Tuner.fit − Σ trial compute seconds / concurrency) / N, where compute
    is what run_point measured inside each trial. It holds everything Ray and Tune add: starting the
    trial actors, scheduling, config transfer, reporting, the Parquet part write, driver bookkeeping.
    Also given apart: first_result_seconds (fit start to the first finished point: actor start-up
    and imports, paid once per sweep, not per point) and, for trivial points, steady_overhead_per_point
    = time between the first and the last result / (N − 1): the cost of one more point on reused
    actors. (With real points the actors' start-ups overlap later results, so no clean split.)
    Ray's own start (ray_start_seconds) is outside the wall. With `sleep` > 0 a third case runs points
    that each sleep that long: a known compute, to check the accounting against.
    """
    from reconent.sweep.ray_session import RaySession, fit
    from reconent.sweep.store import Store
    from reconent.sweep.trainables import noop_trainable, point_trainable, sleep_trainable

    num_cpus = num_cpus or os.cpu_count()
    out = {"bench": "sweep", "n": n, "concurrency": num_cpus, "load_average": os.getloadavg()[0]}
    t = time.perf_counter()
    with RaySession(None, num_cpus), tempfile.TemporaryDirectory(prefix="reconent-bench-") as storage:
        out["ray_start_seconds"] = time.perf_counter() - t
        base = dict(sweep="bench", kind="probe", dataset="mnist5k", arch="mlp", activation="tanh", width=None,
                    channels=None, depth=2, sigma_w2=1.76, sigma_b2=0.05, epochs=1, batch_size=64, lr=1e-3,
                    rtol=0.005, train_samples=128, eval_samples=16)
        cases = {"trivial": (noop_trainable, [{"i": i} for i in range(n)]),
                 "probe": (point_trainable, [dict(base, seed=i) for i in range(n)])}
        if sleep > 0:
            cases["sleep"] = (sleep_trainable, [{"i": i, "sleep": sleep} for i in range(n)])
        ctx = {"storage": storage, "sweep": "bench", "spec_hash": "bench", "device": "cpu", "data_root": None,
               "download": False, "threads": 1}
        for name, (fn, points) in cases.items():
            t = time.perf_counter()
            grid, cb = fit(fn, points, ctx, {"cpu": 1}, 0, progress)
            wall = time.perf_counter() - t
            bad = [r.error for r in grid if r.error is not None] + [s for s in cb.statuses.values() if s != "ok"]
            if bad:
                raise RuntimeError(f"bench sweep: {len(bad)} {name} points failed: {bad[0]}")
            compute = sum(c for _, c in cb.times)
            out[name] = {"wall_seconds": wall, "compute_seconds": compute,
                         "overhead_per_point": (wall - compute / num_cpus) / n,
                         "first_result_seconds": cb.times[0][0] - t}
            if name == "trivial":  # no compute at all: the pace after the first result is Ray's alone
                out[name]["steady_overhead_per_point"] = (cb.times[-1][0] - cb.times[0][0]) / max(1, n - 1)
        out["probe"]["parts"] = len(Store(storage, "bench").done_ids("probe"))
    return out


def bench_search(seeds=(0, 1, 2, 3, 4), budget: int = 100, resolution: float = 2.0, batch: int = 4,
                 columns: int = 20, sigma_w2=(0.1, 6.0), max_depth: int = 200, prior: bool = True,
                 epochs: int = 100, stop: bool = True, stop_error: float = 0.02,
                 cost_power: float | None = None) -> dict:
    """The boundary strategy against a synthetic trainability oracle, in-process, no Ray, no training.

    The oracle (reconent.sweep.search.oracle) has the paper's boundary, min(200, 6·ξ_c), on `columns` σ_w²
    columns over depths 1..max_depth, label noise near it, a noisy probe prediction as the prior, and a cost
    model: seconds per epoch grow with depth, a trainable run stops at its crossing epoch, an untrainable one
    runs the `epochs` budget unless the stop rule (`stop`) ends it, wrongly for a late riser with probability
    `stop_error`. The search proposes `batch` points at a time (the free slots of a sweep); `prior=False`
    ignores the probe prediction (a sweep without probes); `cost_power` (default the search's COST_POWER): the
    acquisition is information per expected second to that power (0: per training, 1: per second). Per oracle
    seed: trainings, median and max |posterior median - L*| over the columns, `training_seconds` (the oracle's
    seconds of the trainings run), `grid_training_seconds` (the 20×20 stride grid of sweeps/mlp_mnist.yaml, σ_w²
    every 3rd of 60 and depths 5, 15, ..., 195, at the same budget under the same stop rule) and `seconds` (of
    the search itself). The top level gives the worst over the seeds, and
    `seconds_ratio` the smallest grid/search ratio of training-seconds."""
    from reconent.sweep.search.boundary import COST_POWER, BoundarySearch, Prior
    from reconent.sweep.search.oracle import Oracle

    cost_power = COST_POWER if cost_power is None else float(cost_power)
    w = np.linspace(*sigma_w2, columns)
    grid_w, grid_d = np.linspace(sigma_w2[0], sigma_w2[1], 60)[::3], range(5, max_depth + 1, 10)
    train = dict(epochs=epochs, stop=stop, stop_error=stop_error)
    runs = []
    for seed in seeds:
        oracle = Oracle(w, cap=max_depth, seed=seed)
        priors = [Prior(oracle.prediction(c), censored=oracle.prediction(c) >= max_depth) for c in range(columns)] \
            if prior else None
        t = time.perf_counter()
        search = BoundarySearch(columns, 1, max_depth, budget, resolution, priors, cost_power=cost_power)
        while batch_ := search.ask(batch):
            for number, c, d, s in batch_:
                r = oracle.train(c, d, s, **train)
                search.tell(number, r["label"], r["seconds"], r["epochs_run"] / epochs)
        seconds = time.perf_counter() - t
        err = np.abs(np.array([e["median"] for e in search.estimates()]) - oracle.L)
        grid = Oracle(grid_w, cap=max_depth, seed=seed)
        grid_seconds = sum(grid.train(c, d, 0, **train)["seconds"] for c in range(len(grid_w)) for d in grid_d)
        runs.append({"seed": seed, "trainings": search.used(), "median_boundary_error": float(np.median(err)),
                     "max_boundary_error": float(err.max()), "training_seconds": search.seconds(),
                     "grid_training_seconds": grid_seconds, "seconds_ratio": grid_seconds / search.seconds(),
                     "seconds": seconds})
    worst = {k: max(r[k] for r in runs) for k in ("trainings", "median_boundary_error", "max_boundary_error",
                                                  "training_seconds", "seconds")}
    worst["grid_training_seconds"] = min(r["grid_training_seconds"] for r in runs)
    worst["seconds_ratio"] = min(r["seconds_ratio"] for r in runs)
    return {"bench": "search", "columns": columns, "depths": [1, max_depth], "budget": budget,
            "resolution": resolution, "batch": batch, "prior": prior, "epochs": epochs, "stop": stop,
            "stop_error": stop_error, "cost_power": cost_power, "grid_trainings": len(grid_w) * len(grid_d), **worst,
            "runs": runs}
