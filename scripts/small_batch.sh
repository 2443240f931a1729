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
  pids=()
  stopping=0
  # Background jobs of a script ignore Ctrl-C (SIGINT); pass a Ctrl-C or a scheduler's SIGTERM
  # on to every worker as SIGTERM: each checkpoints its current run and exits, resumable.
  forward() {
    stopping=1
    echo "stopping ${#pids[@]} workers (each checkpoints its current run); run the same command to resume" >&2
    kill -TERM "${pids[@]}" 2>/dev/null || true
  }
  trap forward INT TERM
  for ((j = 0; j < jobs; j++)); do
    mine=()
    for ((i = j; i < ${#seed_list[@]}; i += jobs)); do mine+=("${seed_list[i]}"); done
    [ ${#mine[@]} -eq 0 ] && continue
    part=$(IFS=,; echo "${mine[*]}")
    log="runs/$experiment-seed$part.log"
    mkdir -p "runs"
    echo "seed=$part -> $log"
    "$normbench" train -m "experiment=$experiment" "seed=$part" "$@" >"$log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    # wait returns early when a trapped signal arrives: wait again until the worker has exited
    while true; do
      code=0
      wait "$pid" || code=$?
      kill -0 "$pid" 2>/dev/null || break
    done
    [ "$code" -eq 0 ] || status=1
  done
  trap - INT TERM
  if [ $stopping -eq 1 ]; then
    echo "stopped; run the same command to resume (runs/$experiment-seed*.log)" >&2
    exit 130
  fi
  [ $status -eq 0 ] || echo "a multirun had failed runs or exited with an error; see runs/$experiment-seed*.log" >&2
fi
"$normbench" report "runs/$experiment" --out "$results"
exit $status
