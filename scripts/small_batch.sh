#!/usr/bin/env bash
# Small-batch study (GroupNorm paper Figure 1 / Table 2): the Hydra multirun of
# experiment=small_batch (5 norms x 5 images per device x seeds), then its report.
# Usage: scripts/small_batch.sh [extra Hydra overrides]
#   JOBS=2      run the seeds as 2 parallel multiruns (one CPU thread each; default 1)
#   SEEDS=0,1   seeds to run (default: the experiment's, 0,1)
#   EXPERIMENT=small_batch  RESULTS=results/small_batch  NORMBENCH=path/to/normbench
# Runs land in runs/$EXPERIMENT/; an interrupted study resumes by running the same command again.
set -euo pipefail
normbench=${NORMBENCH:-normbench}
experiment=${EXPERIMENT:-small_batch}
results=${RESULTS:-results/$experiment}
jobs=${JOBS:-1}
seeds=${SEEDS:-0,1}
IFS=, read -r -a seed_list <<<"$seeds"
status=0
if [ "$jobs" -le 1 ]; then
  "$normbench" train -m "experiment=$experiment" "seed=$seeds" "$@" || status=$?
  [ $status -lt 128 ] || exit $status # stopped by Ctrl-C or SIGTERM: resumable, no report yet
else
  source "$(dirname "$0")/workers.sh"
  for ((j = 0; j < jobs; j++)); do
    mine=()
    for ((i = j; i < ${#seed_list[@]}; i += jobs)); do mine+=("${seed_list[i]}"); done
    [ ${#mine[@]} -eq 0 ] && continue
    part=$(IFS=,; echo "${mine[*]}")
    start_worker "runs/$experiment-seed$part.log" "$normbench" train -m "experiment=$experiment" "seed=$part" "$@"
  done
  wait_workers || status=1
  [ $status -eq 0 ] || echo "a multirun had failed runs or exited with an error; see runs/$experiment-seed*.log" >&2
fi
"$normbench" report "runs/$experiment" --out "$results"
exit $status
