#!/usr/bin/env bash
# The adaptive study, end to end: probes plus the Optuna boundary search (sweeps/boundary_mnist5k.yaml),
# then the report. Results go to results/boundary_mnist5k (git-ignored); the report to
# analysis/boundary_mnist5k/report/. A killed run resumes: stored points are never trained again.
set -euo pipefail
cd "$(dirname "$0")/../.."
RECONENT=${RECONENT:-reconent}
$RECONENT sweep run sweeps/boundary_mnist5k.yaml --json > analysis/boundary_mnist5k/run_summary.json
# The search labelled its trainings with the threshold it ran with (test accuracy > 0.3 within 5 epochs),
# the threshold of the grid study's report (analysis/README.md).
$RECONENT report results/boundary_mnist5k -o analysis/boundary_mnist5k/report
