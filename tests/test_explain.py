"""`reconent explain`: trained-MLP and VGG16 cascades write their PNGs (tiny settings, CPU)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from reconent import explain
from reconent.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_mlp_writes_reconstructions_ideal_inputs_and_profile(capsys, tmp_path):
    code, out, err = run(capsys, "explain", "mlp", "-o", tmp_path, "--depth", "3", "--width", "64",
                         "--train-epochs", "1", "--train-samples", "512", "--probe-samples", "512",
                         "--eval-samples", "32", "--samples", "3", "--json")
    assert code == 0, err
    o = json.loads(out)
    assert o["model"] == "mlp" and o["probe"]["layers"] == 4  # 3 layers + the head's logits
    assert len(o["train"]["accuracy"]) == 1
    figs = explain.figures(tmp_path)
    assert {f["kind"] for f in figs} == {"reconstructions", "ideal_inputs", "profile"}
    for f in figs:
        with Image.open(f["path"]) as im:
            assert im.size[0] > 200 and im.size[1] > 100
    assert o["layer_names"] == ["from layer 1", "from layer 2", "from layer 3", "from logits"]


def test_ideal_inputs_go_through_every_decoder_in_reverse():
    g = torch.Generator().manual_seed(0)
    from reconent.science.models import LinearDecoder

    decs = [LinearDecoder(8, 16, g), LinearDecoder(8, 8, g), LinearDecoder(3, 8, g)]  # g_1, g_2, head
    v = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    want = decs[0](decs[1](decs[2](v)))
    torch.testing.assert_close(explain.ideal_inputs(decs, 3), want)


def test_vgg16_layer_names_and_body_cuts():
    feats, got = explain.load_vgg16("random", seed=0)
    assert got == "random"
    names = explain.vgg16_layer_names(feats)
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"] and names[-1] == "pool5"
    assert len(names) == 31 and names[28] == "conv5_3"
    body = explain.vgg16_body(feats, ["pool1", "relu1_1", "conv2_1"], size=32)  # order does not matter
    assert [b.name for b in body] == ["relu1_1", "pool1", "conv2_1"]
    hs = body.activations(torch.rand(2, 3, 32, 32))
    assert [tuple(h.shape[1:]) for h in hs] == [(3, 32, 32), (64, 32, 32), (64, 16, 16), (128, 16, 16)]
    for g, h_in, h_out in zip(body.decoders(), hs, hs[1:]):
        assert g(h_out).shape == h_in.shape
    with pytest.raises(ValueError, match="unknown VGG16 layer"):
        explain.vgg16_body(feats, ["relu9_9"])


def test_imagenet_weights_that_cannot_load_fall_back_to_random_with_a_warning(monkeypatch):
    import torchvision

    def offline(*a, **k):
        if k.get("weights") is not None:
            raise RuntimeError("no internet here")
        raise AssertionError("the fallback should not build a whole vgg16")

    monkeypatch.setattr(torchvision.models, "vgg16", offline)
    said = []
    feats, got = explain.load_vgg16("imagenet", seed=1, warn=said.append)
    assert got == "random" and isinstance(feats, nn.Sequential)
    assert len(said) == 1 and "random" in said[0] and "no internet here" in said[0]


def test_explain_vgg16_random_weights_on_a_few_224px_images(capsys, tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):  # an ImageFolder with two classes, images of assorted sizes
        d = tmp_path / "imgs" / f"class{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        yy, xx = np.mgrid[0:48 + 8 * i, 0:64]
        img = np.stack([np.sin(xx / (2 + i)), np.cos(yy / (3 + i)), rng.random(xx.shape)], -1)
        Image.fromarray((127.5 * (img + 1) if i % 2 else 255 * np.abs(img)).clip(0, 255).astype(np.uint8)).save(
            d / f"im{i}.png")
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "explain", "vgg16", "--images", tmp_path / "imgs", "-o", out_dir,
                         "--weights", "random", "--layers", "relu1_1,pool1", "--eval-images", "2",
                         "--batch-size", "3", "--samples", "2", "--n-channels", "3", "--json")
    assert code == 0, err
    o = json.loads(out)
    assert o["weights"] == "random" and o["layers"] == ["relu1_1", "pool1"]
    assert o["train_images"] == 3 and o["eval_images"] == 2
    figs = explain.figures(out_dir)
    assert [f["kind"] for f in figs] == ["reconstructions", "channels", "channels", "profile"]
    assert [f.get("layer") for f in figs if f["kind"] == "channels"] == ["relu1_1", "pool1"]
    for f in figs:
        with Image.open(f["path"]) as im:
            assert im.size[0] > 300
    assert np.isfinite(o["probe"]["relative_entropy_median"]).all()


def test_channel_probe_keeps_only_the_chosen_channel():
    feats, _ = explain.load_vgg16("random", seed=0)
    body = explain.vgg16_body(feats, ["relu1_1"], size=32)
    seen = []

    class Spy(nn.Module):
        def forward(self, h):
            seen.append(h.clone())
            return h[:, :3]

    x = torch.rand(2, 3, 32, 32)
    out = explain.channel_probe(body, [Spy()], x, 1, [5, 9])
    assert out.shape == (2, 2, 3, 32, 32)
    h = body[0](x)
    for z, c in zip(seen, [5, 9]):
        torch.testing.assert_close(z[:, c], h[:, c])
        others = [k for k in range(z.shape[1]) if k != c]
        assert (z[:, others] == 0).all() and z[:, c].abs().sum() > 0


def test_bad_explain_arguments_are_one_line_errors(capsys, tmp_path):
    code, _, err = run(capsys, "explain", "vgg16", "--images", "no_such_dataset", "-o", tmp_path, "--weights",
                       "random", "--layers", "relu1_1")
    assert code == 2 and "images" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "explain", "vgg16", "--images", tmp_path, "-o", tmp_path / "o", "--weights", "random",
                       "--layers", "relu1_1")
    assert code == 2 and "no images" in err
