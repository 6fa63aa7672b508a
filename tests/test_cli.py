import json
import shutil
import subprocess
import sys

import pytest

from reconent.cli import main

FAST = ["--depth", "3", "--width", "32", "--train-samples", "128", "--eval-samples", "16"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_probe_json_contract(capsys, tmp_path):
    png, rec = tmp_path / "p.png", tmp_path / "r.png"
    code, out, _ = run(capsys, "probe", "--dataset", "mnist5k", "--arch", "mlp", "--sigma-w2", "1.76",
                       "--sigma-b2", "0.05", "--seed", "0", "--device", "cpu", *FAST, "--json",
                       "--plot", str(png), "--reconstructions", str(rec))
    assert code == 0
    o = json.loads(out)
    assert isinstance(o["cutoff"], int) and 0 <= o["cutoff"] <= 3
    assert len(o["relative_entropy_median"]) == 3 and len(o["differential_entropy"]) == 3
    assert o["seconds"] > 0 and o["depth"] == o["layers"] == 3 and o["device"] == "cpu"
    # the default budget, 938 decoder steps, read also at steps/16 and steps/4 (the anytime probe)
    assert o["steps_run"] == 938 and o["checkpoint_steps"] == [58, 234, 938]
    assert list(o["cutoff_by_steps"]) == ["58", "234", "938"] and o["cutoff_by_steps"]["938"] == o["cutoff"]
    assert png.stat().st_size > 10_000 and rec.stat().st_size > 10_000
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_probe_budget_flags(capsys):
    code, out, _ = run(capsys, "probe", *FAST, "--epochs", "2", "--checkpoints", "none", "--json")
    o = json.loads(out)
    assert code == 0 and o["steps_run"] == 4 and list(o["cutoff_by_steps"]) == ["4"]  # 2 passes of 2 batches
    code, out, _ = run(capsys, "probe", *FAST, "--steps", "5", "--checkpoints", "2,3", "--json")
    o = json.loads(out)
    assert code == 0 and o["steps_run"] == 5 and list(o["cutoff_by_steps"]) == ["2", "3", "5"]
    for bad, word in ((["--steps", "5", "--epochs", "1"], "--epochs"), (["--steps", "5", "--checkpoints", "9"], "1..5"),
                      (["--checkpoints", "soon"], "--checkpoints")):
        code, out, err = run(capsys, "probe", *FAST, *bad)
        assert code == 2 and not out and err.startswith("reconent: error:") and word in err and err.count("\n") == 1


def test_probe_table(capsys):
    code, out, _ = run(capsys, "probe", *FAST)
    assert code == 0
    assert "cutoff" in out and out.count("\n") >= 5


@pytest.mark.parametrize("argv, flag", [
    (["probe", "--depth", "0"], "--depth"),
    (["probe", "--sigma-w2", "-1"], "--sigma-w2"),
    (["probe", "--sigma-b2", "-0.1"], "--sigma-b2"),
    (["probe", "--dataset", "imagenet"], "--dataset"),
    (["probe", "--arch", "transformer"], "--arch"),
    (["probe", "--depth", "two"], "--depth"),
    (["theory", "--sigma-b2", "-1"], "--sigma-b2"),
    (["theory", "--sigma-b2", "1e9"], "sigma_b2"),  # past the quadrature's range: was scipy's traceback
    (["theory", "--sigma-w2", "20"], "sigma_w2"),
])
def test_bad_arguments_give_one_line_and_exit_2(capsys, argv, flag):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("reconent: error:") and flag in err


def test_missing_dataset_names_root_and_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "probe", "--dataset", "fashion_mnist", "--data-root", str(tmp_path), *FAST)
    assert code == 2 and str(tmp_path) in err and "download" in err and err.count("\n") == 1


def test_cuda_without_gpu_is_a_clear_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, _, err = run(capsys, "probe", "--device", "cuda", *FAST)
    assert code == 2 and "cuda" in err


def test_theory_json(capsys):
    code, out, _ = run(capsys, "theory", "--sigma-b2", "0.05", "--json")
    assert code == 0 and abs(json.loads(out)["critical_sigma_w2"] - 1.76) < 0.01
    code, out, _ = run(capsys, "theory", "--sigma-b2", "0.05", "--sigma-w2", "1.0", "--activation", "tanh", "--json")
    o = json.loads(out)
    assert {"chi_1", "xi_c", "q_star", "c_star"} <= o.keys()
    assert o["chi_1"] < 1 and o["phase"] == "ordered"


def test_bench_probe_reports_efficiency(capsys):
    code, out, _ = run(capsys, "bench", "probe", "--depth", "2", "--width", "64", "--steps", "4", "--json")
    o = json.loads(out)
    assert code == 0 and o["device"] == "cpu"
    # FLOPs counted here: per Dense layer and step 6·B·w² (forward, decoder forward, decoder weight grad)
    B, w, L = 64, 64, 2
    assert (o["batch_size"], o["width"], o["layers"], o["steps"]) == (B, w, L, 4)
    flops = 6 * B * w * w * L * o["steps"]
    train_seconds = o["ms_per_step"] * 1e-3 * o["steps"]
    assert o["gflops"] == pytest.approx(flops / train_seconds / 1e9, rel=1e-6)
    # a 64-wide matmul cannot beat the machine's large-matmul peak
    assert o["peak_gflops"] > 0 and 0 < o["efficiency"] < 1.5


def test_console_script_is_installed():
    exe = shutil.which("reconent") or str(__import__("pathlib").Path(sys.executable).parent / "reconent")
    p = subprocess.run([exe, "theory", "--json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "critical_sigma_w2" in json.loads(p.stdout)


def test_console_script_quick_exit_flushes_output_and_keeps_the_exit_code(tmp_path):
    """probe and theory end with os._exit: what they printed or plotted is all there, and bad input is still 2."""
    exe = shutil.which("reconent") or str(__import__("pathlib").Path(sys.executable).parent / "reconent")
    png = tmp_path / "profile.png"
    p = subprocess.run([exe, "probe", "--depth", "3", "--epochs", "1", "--train-samples", "64", "--eval-samples", "20", "--json",
                        "--plot", str(png)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    o = json.loads(p.stdout)
    assert o["layers"] == 3 and len(o["relative_entropy_median"]) == 3 and png.stat().st_size > 1000
    bad = subprocess.run([exe, "probe", "--eval-depths", "some"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("reconent: error:") and not bad.stdout


def test_bad_input_from_below_the_cli_is_one_line_and_exit_2(capsys, tmp_path):
    """Checks that live in the library (a size setting the architecture does not have, a sweep that is not
    there) raise reconent.errors.UserError: one line, exit 2."""
    for argv, word in ((["probe", *FAST, "--arch", "mlp", "--channels", "4"], "channels does not apply"),
                       (["sweep", "status", str(tmp_path / "nowhere")], "no sweep"),
                       (["compact", str(tmp_path / "nowhere")], "no sweep")):
        code, out, err = run(capsys, *argv)
        assert code == 2 and not out and err.startswith("reconent: error:") and err.count("\n") == 1, (argv, err)
        assert word in err


def test_an_unexpected_error_is_not_passed_off_as_bad_input(monkeypatch, capsys):
    """A ValueError that is nobody's input (here one as pandas raises it) propagates: the console script
    then prints its traceback and exits 1, instead of one line that blames the user's input."""
    import reconent.sweep.status

    def bug(*a, **k):
        raise ValueError("cannot reindex on an axis with duplicate labels")

    monkeypatch.setattr(reconent.sweep.status, "status", bug)
    with pytest.raises(ValueError, match="duplicate labels"):
        main(["sweep", "status", "anything", "--storage", "nowhere"])
    assert "reconent: error" not in capsys.readouterr().err


def test_console_script_shows_the_traceback_of_an_unexpected_error(tmp_path):
    """The script, end to end: a sweep that is not there is bad input (exit 2, one line); a store that
    cannot read its own spec (a folder where the file should be) is the environment (traceback, exit 1)."""
    code = subprocess.run([sys.executable, "-m", "reconent.cli", "sweep", "status", str(tmp_path / "no")],
                          capture_output=True, text=True)
    assert code.returncode == 2 and "Traceback" not in code.stderr and code.stderr.count("\n") == 1
    (tmp_path / "sw" / "specs").mkdir(parents=True)
    (tmp_path / "sw" / "specs" / "spec.yaml").mkdir()  # the store cannot read its own spec: not the user's input
    code = subprocess.run([sys.executable, "-m", "reconent.cli", "sweep", "status", str(tmp_path / "sw")],
                          capture_output=True, text=True)
    assert code.returncode == 1 and "Traceback (most recent call last)" in code.stderr, code.stderr
