#!/usr/bin/env bash
# The adaptive study, end to end: probes plus the Optuna boundary search (sweeps/boundary_mnist5k.yaml),
# then the report. Results go to analysis/boundary_mnist5k/data/boundary_mnist5k
# (committed, compacted); the report to
# analysis/boundary_mnist5k/report/. A killed run resumes: stored points are never trained again.
set -euo pipefail
cd "$(dirname "$0")/../.."
RECONENT=${RECONENT:-reconent}
$RECONENT sweep run sweeps/boundary_mnist5k.yaml --storage analysis/boundary_mnist5k/data --json > analysis/boundary_mnist5k/run_summary.json
$RECONENT compact analysis/boundary_mnist5k/data/boundary_mnist5k   # committed rows; a rerun resumes
# The search labelled its trainings with the threshold it ran with (test accuracy > 0.3 within 5 epochs),
# the threshold of the grid study's report (analysis/README.md).
$RECONENT report analysis/boundary_mnist5k/data/boundary_mnist5k -o analysis/boundary_mnist5k/report
