#!/usr/bin/env bash
# The boundary study at honest budgets (issue 17, item 4), end to end: the search (search.yaml: 16 probes at 938
# steps, then the boundary search's trainings), the 40-point grid (grid.yaml), compaction, then the comparison
# (compare.py -> out/compare.json, out/compare.md). Every sweep resumes where it stopped: points stored under
# analysis/boundary_mnist5k/data are never computed again (the search is rebuilt from its stored trainings). The
# machine's load is logged to load.log, because the seconds in the comparison mean little without it.
# Hours on 2 cores (README.md, "Honest budgets"); run it under nohup and rerun it after an interruption.
#   analysis/boundary_mnist5k/honest/run_honest.sh            # everything
#   analysis/boundary_mnist5k/honest/run_honest.sh search     # only the search;  `grid` only the grid;
#   analysis/boundary_mnist5k/honest/run_honest.sh compare    # only the comparison (seconds)
# RECONENT / PYTHON: the CLI and interpreter (default: reconent, python); DATA: the storage (default: the committed
# one); OUT: the comparison's folder; LOAD: the load log; SPECS: the specs' folder; EPOCHS2: a second epoch budget
# the comparison also reads the rows at (default 20; empty: none).
set -euo pipefail
cd "$(dirname "$0")/../../.."
RECONENT=${RECONENT:-reconent}
PYTHON=${PYTHON:-python}
HERE=analysis/boundary_mnist5k/honest
SPECS=${SPECS:-$HERE}   # where search.yaml and grid.yaml are (a smoke test points it at tiny copies)
DATA=${DATA:-analysis/boundary_mnist5k/data}
OUT=${OUT:-$HERE/out}
LOAD=${LOAD:-$HERE/load.log}
what=${1:-all}
(while true; do echo "$(date -u +%FT%TZ) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 60; done >> "$LOAD") &
logger=$!
trap 'kill $logger' EXIT
if [[ $what == all || $what == search ]]; then
  mkdir -p "$OUT"   # the search's own summary (per column: prior, trainings, posterior L*)
  $RECONENT sweep run "$SPECS/search.yaml" --storage "$DATA" --json > "$OUT/search_summary.json.tmp"
  mv "$OUT/search_summary.json.tmp" "$OUT/search_summary.json"
fi
if [[ $what == all || $what == grid ]]; then
  $RECONENT sweep run "$SPECS/grid.yaml" --storage "$DATA"
fi
for s in boundary_honest boundary_honest_grid; do
  if [[ -d $DATA/$s ]]; then $RECONENT compact "$DATA/$s"; fi
done
if [[ $what == all || $what == compare ]]; then
  $PYTHON $HERE/compare.py "$DATA" --out "$OUT" --load-log "$LOAD"
  # the same rows read at a second epoch budget (anytime verdicts); EPOCHS2= (empty) skips it
  EPOCHS2=${EPOCHS2-20}
  if [[ -n $EPOCHS2 ]]; then
    $PYTHON $HERE/compare.py "$DATA" --out "$OUT/epochs_$EPOCHS2" --load-log "$LOAD" --epochs "$EPOCHS2" > /dev/null
  fi
fi
