"""The CUDA-only code paths of the probe (science/probe.py: `_train_stacked_cuda` with its CUDA graphs,
evaluation on the device, the TF32 switch) and the GPU fields of a row. Skipped without a GPU;
scripts/gpu_check.sh runs them on one.

Tolerance against the CPU: the GPU's fp32 GEMMs sum in another order (and cuBLAS picks other kernels
under graph capture), so one epoch of Adam drifts by rounding only: decoder losses and entropies agree to
rtol 2e-3 (measured differences are ~1e-5 relative; TF32, with a 10-bit mantissa, would not pass).
"""
import numpy as np
import pytest
import torch

from reconent.science.archs.mlp import mlp
from reconent.science.probe import probe

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

RTOL = 2e-3
WIDTH = 64


def run(depth, device, seed=0, sigma_w2=1.76, n_train=700, **kw):
    g = torch.Generator().manual_seed(11)
    x, ev = torch.rand(n_train, WIDTH, generator=g), torch.rand(80, WIDTH, generator=g)
    return probe(mlp(depth, WIDTH, WIDTH, "tanh", sigma_w2, 0.05, seed), x, ev, **kw, device=device)


def test_cuda_stacked_probe_agrees_with_the_cpu():
    """700 = 1 chunk of 512 (eager) + a chunk of 188 (its own graph, last batch 60): every branch runs."""
    cpu, gpu = run(8, "cpu", epochs=1, eval_depths="all"), run(8, "cuda", epochs=1, eval_depths="all")
    assert gpu.path == "stacked" and gpu.device.startswith("cuda") and gpu.steps_run == cpu.steps_run
    np.testing.assert_allclose(gpu.decoder_loss, cpu.decoder_loss, rtol=RTOL)
    np.testing.assert_allclose(gpu.relative_entropy, cpu.relative_entropy, rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(gpu.differential_entropy, cpu.differential_entropy, rtol=RTOL)
    assert gpu.cutoff() == cpu.cutoff()


def test_cuda_graph_replays_match_eager_steps_over_several_epochs():
    """Epoch 2 replays the graphs captured in epoch 1, the last smaller chunk's included."""
    cpu, gpu = run(5, "cpu", epochs=3, eval_depths="all"), run(5, "cuda", epochs=3, eval_depths="all")
    assert gpu.steps_run == cpu.steps_run == 3 * 11
    np.testing.assert_allclose(gpu.decoder_loss, cpu.decoder_loss, rtol=RTOL)
    np.testing.assert_allclose(gpu.relative_entropy, cpu.relative_entropy, rtol=RTOL, atol=1e-6)


def test_cuda_prefix_property():
    deep, shallow = run(9, "cuda", eval_depths="all"), run(4, "cuda", eval_depths="all")
    np.testing.assert_allclose(deep.relative_entropy[:4], shallow.relative_entropy, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(deep.decoder_loss[:4], shallow.decoder_loss, rtol=1e-4)


@pytest.mark.parametrize("sigma_w2", [0.5, 1.76, 3.0])
def test_cuda_cutoffs_on_a_small_setting_match_the_cpu(sigma_w2):
    cpu = run(30, "cpu", sigma_w2=sigma_w2, eval_depths="all")
    gpu = run(30, "cuda", sigma_w2=sigma_w2, eval_depths="search")  # the CLI's default, on the device
    assert abs(gpu.cutoff() - cpu.cutoff()) <= 1, (sigma_w2, gpu.cutoff(), cpu.cutoff())


def test_cuda_generic_path_agrees_with_the_cpu():
    cpu, gpu = run(4, "cpu", stacked=False, eval_depths="all"), run(4, "cuda", stacked=False, eval_depths="all")
    assert gpu.path == "generic"
    np.testing.assert_allclose(gpu.relative_entropy, cpu.relative_entropy, rtol=RTOL, atol=1e-6)


def test_tf32_is_off_unless_asked_and_restored():
    torch.backends.cuda.matmul.allow_tf32 = True  # a process-wide setting the probe must not inherit
    try:
        off = run(3, "cuda", eval_depths="all")
        assert torch.backends.cuda.matmul.allow_tf32  # restored afterwards
        on = run(3, "cuda", eval_depths="all", tf32=True)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False
    cpu = run(3, "cpu", eval_depths="all")
    np.testing.assert_allclose(off.decoder_loss, cpu.decoder_loss, rtol=RTOL)
    assert off.summary()["tf32"] is False and on.summary()["tf32"] is True


def test_cuda_row_records_the_gpu_and_versions():
    from reconent.sweep.trial import gpu_info

    info = gpu_info("cuda")
    assert info["gpu_name"] == torch.cuda.get_device_name(0) and info["cuda_version"] == torch.version.cuda
    assert info["cudnn_version"] is None or info["cudnn_version"].isdigit()
    assert gpu_info("cpu") == {"gpu_name": None, "cuda_version": None, "cudnn_version": None}


def test_cuda_bench_measures_the_fp32_peak_in_process():
    from reconent.bench import bench_probe

    o = bench_probe(depth=6, width=128, steps=20, device="cuda", eval_samples=40)
    assert o["device"] == "cuda" and o["peak_gflops"] > 1000 and 0 < o["efficiency"] < 1.5
    assert o["cuda_peak_memory_gib"] > 0 and o["eval"]["all"]["cutoff"] == o["eval"]["search"]["cutoff"]
