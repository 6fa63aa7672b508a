"""Benchmarks that print numbers (never timed tests): `reconent bench probe`."""
from __future__ import annotations

import time

import torch

from .models import build
from .probe import probe


def matmul_peak(device: torch.device, sizes=(784, 1024, 2048), seconds: float = 0.5) -> float:
    """The machine's plain fp32 matmul throughput in GFLOP/s: the best over a few square sizes."""
    best = 0.0
    for n in sizes:
        a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
        out = torch.empty(n, n, device=device)
        for _ in range(3):  # warm up threads and caches
            torch.mm(a, b, out=out)
        reps, t = 0, time.perf_counter()
        while True:
            torch.mm(a, b, out=out)
            reps += 1
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t
            if dt > seconds:
                break
        best = max(best, 2 * n**3 * reps / dt / 1e9)
    return best


def probe_flops_per_step(body, batch_size: int) -> float:
    """Matmul work of one probe step: per Dense layer the forward, the decoder forward and the
    decoder weight gradient, each 2·B·n_in·n_out flops (elementwise work and Adam not counted)."""
    return sum(6 * batch_size * b.n_in * b.n_out for b in body)


def bench_probe(arch: str = "mlp", width: int = 784, depth: int = 30, steps: int = 100, batch_size: int = 64,
                device: str = "cpu", stacked: bool | None = None) -> dict:
    """Time the probe's training loop on a paper-sized body, then the matmul peak in the same process."""
    dev = torch.device(device)
    if arch != "mlp":
        raise ValueError(f"bench probe supports --arch mlp; got {arch!r}")
    in_shape = (width,)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(steps * batch_size, *in_shape, generator=gen)
    ev = torch.rand(64, *in_shape, generator=gen)
    body = build(arch, depth, in_shape, width=width, sigma_w2=1.76, sigma_b2=0.05, seed=0)
    probe(body, x[: 4 * batch_size], ev, batch_size=batch_size, device=dev, stacked=stacked)  # warm-up
    r = probe(body, x, ev, batch_size=batch_size, device=dev, stacked=stacked)
    gflops = probe_flops_per_step(body, batch_size) * r.steps / r.train_seconds / 1e9
    peak = matmul_peak(dev)
    return {
        "bench": "probe", "device": str(dev), "device_name": _device_name(dev), "threads": torch.get_num_threads(),
        "arch": arch, "width": width, "depth": depth, "batch_size": batch_size, "steps": r.steps, "path": r.path,
        "ms_per_step": 1e3 * r.train_seconds / r.steps, "eval_seconds": r.seconds - r.train_seconds,
        "gflops": gflops, "peak_gflops": peak, "efficiency": gflops / peak, "torch": torch.__version__,
    }


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    import platform

    return platform.processor() or platform.machine()
