#!/usr/bin/env bash
# The GPU check of issue 11, as one call on a machine with one CUDA GPU (about 4-6 minutes on an H100):
#   1. the `cuda`-marked tests (agreement with the CPU, the prefix property, cutoffs, TF32, row fields);
#   2. `reconent bench probe --device cuda` at width 784, depths 30 and 200 (training against the fp32
#      matmul peak measured in the same process, TF32 off; evaluation timed apart);
#   3. a depth-200 probe over 60,000 MNIST-shaped images (mnist5k's 4,000 training images repeated 15x,
#      since the machine has no internet), evaluation included, with the default settings.
# Goals (H100, fp32 without TF32): training efficiency >= 0.35 at depth 200; the 60k probe <= 5 s.
# Everything it prints is also written under ${OUT:-/tmp}/gpu_check/ (JSON per step).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RECONENT=${RECONENT:-.venv/bin/reconent}
DIR=${OUT:-/tmp}/gpu_check
mkdir -p "$DIR"
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$DIR/nvidia-smi.txt"

echo "== 1. cuda tests"
timeout 240 $PY -m pytest -q -m cuda tests/test_cuda.py 2>&1 | tail -15 | tee "$DIR/tests.txt"

echo "== 2. bench probe --device cuda"
for d in 30 200; do
  timeout 150 $RECONENT bench probe --device cuda --depth $d --steps 300 --json > "$DIR/bench_depth$d.json" \
    && $PY -c "import json,sys; o=json.load(open(sys.argv[1])); print({k: o[k] for k in ('device_name','depth','steps','ms_per_step','train_seconds','gflops','peak_gflops','efficiency','cuda_peak_memory_gib')}, o['eval'])" "$DIR/bench_depth$d.json"
done

echo "== 3. depth-200 probe over 60,000 images"
timeout 150 $PY - "$DIR/probe60k.json" <<'PYEOF'
import json, sys, time
import torch
from reconent.science import archs, data
from reconent.science.probe import probe
from reconent.sweep.trial import gpu_info

d = data.load("mnist5k")
x = d.train_x.repeat(15, 1, 1, 1)  # 60,000 MNIST-shaped images
out = {"n_train": len(x), **gpu_info("cuda")}
for sw in (1.76, 0.5):
    body = archs.build("mlp", 200, d.shape, seed=0, sigma_w2=sw, sigma_b2=0.05, activation="tanh", width=None)
    if sw == 1.76:  # warm-up: CUDA context, cuBLAS handles, kernels
        probe(body, x[:2048], d.test_x, device="cuda")
    torch.cuda.synchronize()
    t = time.perf_counter()
    r = probe(body, x, d.test_x, device="cuda")
    wall = time.perf_counter() - t
    out[f"sigma_w2_{sw}"] = {"wall_seconds": wall, "train_seconds": r.train_seconds,
                             "eval_seconds": r.seconds - r.train_seconds, "steps": r.steps, "cutoff": r.cutoff(),
                             "evaluated_layers": int(r.evaluated.sum()), "status": r.status}
    print(sw, out[f"sigma_w2_{sw}"], flush=True)
out["mlp_mnist_60_probes_minutes_estimate"] = 60 * out["sigma_w2_1.76"]["wall_seconds"] / 60
json.dump(out, open(sys.argv[1], "w"), indent=1)
print(json.dumps(out))
PYEOF
