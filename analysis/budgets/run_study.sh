#!/usr/bin/env bash
# Study "budgets" end to end: the trainings (ground truth against its epoch budget), the anytime probes (cutoff
# against decoder steps), then compaction and the tables and figures (study.py). Every sweep resumes where it stopped:
# points already stored under analysis/budgets/data are skipped. The machine's load is logged to load.log, because
# the seconds in the write-up mean little without it.
#   analysis/budgets/run_study.sh            # everything (hours on 2 cores; see README.md)
#   analysis/budgets/run_study.sh train      # only the trainings;  `probes` only the probes;  `study` only the tables
set -euo pipefail
cd "$(dirname "$0")/../.."
RECONENT=${RECONENT:-reconent}
DATA=analysis/budgets/data
what=${1:-all}
(while sleep 60; do echo "$(date -u +%FT%TZ) $(cut -d' ' -f1-3 /proc/loadavg)"; done >> analysis/budgets/load.log) &
logger=$!
trap 'kill $logger' EXIT
if [[ $what == all || $what == train ]]; then
  $RECONENT sweep run analysis/budgets/train.yaml
  $RECONENT sweep run analysis/budgets/train_seed1.yaml   # a second seed on the chaotic columns
fi
if [[ $what == all || $what == probes ]]; then
  for f in probe_d40 probe_d80 probe_d120 probe_critical; do $RECONENT sweep run analysis/budgets/$f.yaml; done
fi
for s in budgets_train budgets_train_seed1 budgets_probe; do
  [[ -d $DATA/$s ]] && $RECONENT compact $DATA/$s
done
if [[ $what == all || $what == study ]]; then
  ${PYTHON:-python} analysis/budgets/study.py
fi
