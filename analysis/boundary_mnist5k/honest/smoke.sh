#!/usr/bin/env bash
# The honest study's pipeline end to end in about 2 minutes, on tiny copies of its specs (2 σ_w², depths <= 6, probes
# of 63 steps, 1 epoch at threshold 0.3, a search of 4 trainings) written to a temporary folder with their storage;
# nothing is written under analysis/. Run it before starting run_honest.sh on a new machine.
#   analysis/boundary_mnist5k/honest/smoke.sh [FOLDER]      (default: a new folder under /tmp)
set -euo pipefail
cd "$(dirname "$0")/../../.."
PYTHON=${PYTHON:-python}
HERE=analysis/boundary_mnist5k/honest
TMP=${1:-$(mktemp -d /tmp/boundary_honest_smoke.XXXX)}
mkdir -p "$TMP"
$PYTHON - "$HERE" "$TMP" <<'PY'
import sys
from pathlib import Path

import yaml

here, tmp = Path(sys.argv[1]), Path(sys.argv[2])
tiny = {"epochs": 1, "threshold": 0.3}  # the same stop rule and settings otherwise
for name, depth in (("search", [6]), ("grid", [2, 4, 6])):
    s = yaml.safe_load((here / f"{name}.yaml").read_text())
    s["grid"].update(sigma_w2=[1.2, 8.0], depth=depth)
    s["train"].update(tiny)
    if name == "search":
        s["probe"]["steps"] = 63
        s["train"]["points"]["boundary"].update(budget=4, depth={"min": 1, "max": 6})
    s["storage"] = str(tmp / "data")
    (tmp / f"{name}.yaml").write_text(yaml.safe_dump(s, sort_keys=False, allow_unicode=True))
PY
SPECS=$TMP DATA=$TMP/data OUT=$TMP/out LOAD=$TMP/load.log EPOCHS2= $HERE/run_honest.sh
echo "smoke run: specs, rows and comparison under $TMP"
