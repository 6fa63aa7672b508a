"""CNN and ResNet bodies (SCIENCE §4): shapes, init, decoders, prefix property, physics, CLI and bench."""
import json
import math

import numpy as np
import pytest
import torch

from reconent.science import data, theory
from reconent.bench import bench_probe, probe_flops_per_step
from reconent.cli import main
from reconent.science import archs
from reconent.science.archs import build
from reconent.science.models import Conv, Residual

STEM_LAYERS = 3  # the cnn's and resnet's stem, counted by hand from SCIENCE §4 (not read from the code)
from reconent.science.probe import probe

ARCHS = archs.names()
DEFAULT_CHANNELS = {n: archs.get(n).default_size for n in ARCHS if archs.get(n).size == "channels"}

SHAPES = [(1, 28, 28), (1, 32, 32), (3, 32, 32), (1, 9, 9), (1, 15, 17)]


@pytest.fixture(scope="module")
def mnist():
    return data.load("mnist5k")


def tiny(arch, depth, shape=(1, 28, 28), **kw):
    kw = {"channels": None if arch == "mlp" else 4, **kw}
    return build(arch, depth, shape, **kw)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", SHAPES)
def test_every_decoder_maps_back_to_exactly_its_blocks_input_shape(arch, shape):
    body = tiny(arch, 3, shape)
    x = torch.rand(2, *body.in_shape)
    hs = body.activations(x)
    for l, (g, h_in, h_out) in enumerate(zip(body.decoders(), hs, hs[1:]), 1):
        assert g(h_out).shape == h_in.shape, (arch, shape, l)
    if arch != "mlp":
        assert len(body) == 3 + STEM_LAYERS and body.stem == STEM_LAYERS
        # 28 → 28 → 14 → 7 (32 → 16 → 8), then the circular-padded blocks keep the size
        n = shape[1]
        assert [tuple(h.shape[2:]) for h in hs][:4] == [shape[1:], shape[1:], ((n + 1) // 2, (shape[2] + 1) // 2),
                                                         ((n + 3) // 4, (shape[2] + 3) // 4)]
        assert hs[-1].shape == hs[4].shape


def test_decoders_need_no_crop_fallback_on_mnist_and_cifar_sizes():
    # Each transposed conv lands exactly on the shape (output_padding for stride 2), no cropping.
    for arch in ("cnn", "resnet"):
        for shape in [(1, 28, 28), (1, 32, 32)]:
            body = tiny(arch, 2, shape)
            hs = body.activations(torch.rand(1, *shape))
            for g, h_out in zip(body.decoders(), hs[1:]):
                h = h_out
                for t, s in zip(g.convs, g.shapes[1:]):
                    h = t(h)
                    assert tuple(h.shape[1:]) == s


def test_conv_init_is_xiao_fan_in_and_residual_blocks_keep_shape():
    body = build("cnn", 2, (1, 28, 28), channels=64, sigma_w2=2.0, sigma_b2=0.5, seed=0)
    w = torch.cat([b.weight.flatten() for b in list(body)[1:]])  # C_in = 64 for all of these
    assert w.var().item() == pytest.approx(2.0 / (64 * 9), rel=0.03)
    assert torch.cat([b.bias for b in body]).var().item() == pytest.approx(0.5, rel=0.25)
    assert body[0].weight.var().item() == pytest.approx(2.0 / 9, rel=0.2)  # C_in = 1
    assert isinstance(body[3], Conv) and (body[3].padding, body[3].circular) == (0, 1)
    res = build("resnet", 2, (1, 28, 28), channels=4)
    assert isinstance(res[3], Residual) and res[3].in_shape == res[3].out_shape == (4, 7, 7)
    # y = tanh(F(x) + x) with F(x) = pad(conv(pad(tanh(conv(x))))): check against the definition
    blk, x = res[3], torch.randn(2, 4, 7, 7)
    f = torch.tanh(torch.nn.functional.pad(torch.nn.functional.conv2d(x, blk.w1, blk.b1), (1,) * 4, mode="circular"))
    f = torch.nn.functional.pad(torch.nn.functional.conv2d(f, blk.w2, blk.b2), (1,) * 4, mode="circular")
    torch.testing.assert_close(blk(x), torch.tanh(f + x))


def test_same_seed_same_body_and_depth_prefix_has_same_weights():
    a, b = build("cnn", 5, (1, 28, 28), channels=4, seed=7), build("cnn", 2, (1, 28, 28), channels=4, seed=7)
    for x, y in zip(a, b):
        torch.testing.assert_close(x.weight, y.weight, rtol=0, atol=0)
    for ga, gb in zip(a.decoders(), b.decoders()):
        for p, q in zip(ga.parameters(), gb.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert not torch.equal(a[0].weight, build("cnn", 2, (1, 28, 28), channels=4, seed=8)[0].weight)


def test_build_arguments_are_checked():
    with pytest.raises(ValueError, match="channels"):
        build("mlp", 2, (1, 28, 28), channels=8)
    with pytest.raises(ValueError, match="width"):
        build("cnn", 2, (1, 28, 28), width=100)
    with pytest.raises(ValueError, match="9×9"):
        build("resnet", 2, (1, 8, 8))
    with pytest.raises(ValueError, match="depth"):
        build("cnn", 0, (1, 28, 28))
    with pytest.raises(ValueError, match="arch"):
        build("vgg", 2, (1, 28, 28))
    assert build("cnn", 1, (1, 28, 28))[0].out_shape[0] == 128
    assert build("resnet", 1, (28, 28))[0].out_shape[0] == 32  # (H, W) means one channel


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_prefix_property_for_conv_bodies(arch):
    g = torch.Generator().manual_seed(5)
    x, ev = torch.rand(192, 1, 28, 28, generator=g), torch.rand(24, 1, 28, 28, generator=g)
    deep = probe(build(arch, 4, (1, 28, 28), channels=4, seed=2), x, ev, epochs=1, rtol=0.01)
    shallow = probe(build(arch, 1, (1, 28, 28), channels=4, seed=2), x, ev, epochs=1, rtol=0.01)
    n = 1 + STEM_LAYERS
    assert deep.path == "generic" and deep.depth == 4 + STEM_LAYERS and shallow.depth == n
    np.testing.assert_allclose(deep.relative_entropy[:n], shallow.relative_entropy, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(deep.decoder_loss[:n], shallow.decoder_loss, rtol=1e-4)
    np.testing.assert_allclose(deep.differential_entropy[:n], shallow.differential_entropy, rtol=1e-4)


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_physics_ordered_plateaus_earlier_than_critical(mnist, arch):
    """σ_w² = 0.3 is deep in the ordered phase; (1.76, 0.05) is critical for tanh (the conv mean
    field is the MLP's). Tiny but stable setting, found over seeds 0-5: channels 8, 10 blocks,
    the 4,000 mnist5k training images, decoder lr 1e-2, 300 held-out images. Seen: ordered cutoffs
    3-6, critical 8-12 (layers, stem included)."""
    cut = {}
    for sw in (0.3, 1.76):
        body = build(arch, 10, mnist.shape, channels=8, sigma_w2=sw, sigma_b2=0.05, seed=0)
        r = probe(body, mnist.train_x, mnist.test_x, epochs=1, lr=1e-2, rtol=0.01, eval_samples=300)
        assert r.status == "ok"
        cut[sw] = r.cutoff()
    assert cut[0.3] + 3 <= cut[1.76], cut


def test_cnn_critical_point_is_the_mlp_mean_field_at_xiao_bias():
    # Xiao et al.: with W ~ N(0, σ_w²/(C_in k²)) the conv mean field is the MLP's, so the tanh CNN is
    # critical where the MLP is: σ_w² ≈ 1.0499 at σ_b² = 2e-5.
    assert theory.critical_sigma_w2(2e-5, "tanh") == pytest.approx(1.0499, abs=5e-4)


def test_cli_probe_cnn_json(capsys):
    code = main(["probe", "--arch", "cnn", "--channels", "4", "--depth", "2", "--epochs", "1", "--train-samples", "128",
                 "--eval-samples", "16", "--sigma-w2", "1.05", "--sigma-b2", "2e-5", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    o = json.loads(out)
    assert o["arch"] == "cnn" and o["channels"] == 4 and o["rtol"] == 0.01 and o["path"] == "generic"
    assert len(o["relative_entropy_median"]) == o["layers"] == 2 + STEM_LAYERS
    assert o["depth"] == 2  # the point's depth counts blocks; the stem adds probe layers


def test_cli_probe_rejects_channels_for_mlp(capsys):
    code = main(["probe", "--arch", "mlp", "--channels", "4", "--depth", "2", "--train-samples", "64",
                 "--eval-samples", "8"])
    assert code == 2 and "channels" in capsys.readouterr().err


def _cnn1_flops(C: int, B: int, k2: int = 9) -> int:
    """Counted by hand for a depth-1 cnn on 1×28×28: per conv 2·B·C_in·k²·C_out·(H_conv·W_conv + 2·H_out·W_out)
    (forward, decoder forward, decoder weight gradient); stem 28 → 28 → 14 → 7, then the unpadded
    3×3 conv 7 → 5, circularly padded back to 7."""
    return 2 * B * k2 * (1 * C * (28 * 28 + 2 * 28 * 28) + C * C * (14 * 14 + 2 * 14 * 14)
                         + C * C * (7 * 7 + 2 * 7 * 7) + C * C * (5 * 5 + 2 * 7 * 7))


def test_bench_conv_flops_and_efficiency(capsys):
    body = build("cnn", 1, (1, 28, 28), channels=8)
    B, k2 = 64, 9
    assert probe_flops_per_step(body, B) == _cnn1_flops(8, B)
    res = build("resnet", 1, (1, 28, 28), channels=8)
    assert probe_flops_per_step(res, B) - sum(b.probe_flops(B) for b in list(res)[:3]) \
        == 2 * B * k2 * 8 * 8 * (2 * 25 + 5 * 49)
    code = main(["bench", "probe", "--arch", "cnn", "--channels", "4", "--depth", "1", "--steps", "3", "--json"])
    o = json.loads(capsys.readouterr().out)
    assert code == 0 and o["arch"] == "cnn" and o["channels"] == 4 and o["layers"] == 1 + STEM_LAYERS
    # the rate is the hand count over the measured time per step (bench batch 64) ...
    assert o["batch_size"] == 64 and o["ms_per_step"] > 0
    assert o["gflops"] == pytest.approx(_cnn1_flops(4, 64) / (o["ms_per_step"] * 1e-3) / 1e9, rel=1e-6)
    # ... beside the machine's measured matmul peak (the fraction is a figure for docs/performance.md, not a test)
    assert o["peak_gflops"] > 0
    assert math.isfinite(bench_probe("resnet", None, 1, 2, 8, channels=2)["ms_per_step"])


@pytest.mark.parametrize("name, arch, dataset", [("cnn_mnist", "cnn", "mnist"),
                                                  ("resnet_fashion_mnist", "resnet", "fashion_mnist")])
def test_paper_scale_conv_specs_validate(name, arch, dataset):
    from pathlib import Path

    from reconent.sweep.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "sweeps" / f"{name}.yaml", check_storage=False)
    pts = spec.points()
    assert spec.name == name and {p["arch"] for p in pts} == {arch} and {p["dataset"] for p in pts} == {dataset}
    assert all(p["channels"] == DEFAULT_CHANNELS[arch] and p["width"] is None for p in pts)
    assert {p["rtol"] for p in pts if p["kind"] == "probe"} == {0.01}
    assert any(p["kind"] == "train" for p in pts)
    build(arch, 2, (1, 28, 28), channels=pts[0]["channels"])  # what a trial will build
