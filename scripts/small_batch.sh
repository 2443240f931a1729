#!/usr/bin/env bash
# Small-batch study (GroupNorm paper Figure 1 / Table 2): the Hydra multirun of
# experiment=small_batch (5 norms x 5 images per device x seeds), then its report.
# Usage: scripts/small_batch.sh [extra Hydra overrides]
#   JOBS=2      run 2 jobs at once, each in a worker process of Hydra's joblib launcher
#               (hydra/launcher=joblib with NORMBENCH_JOBS=2; one CPU thread each); default 1:
#               one job after another
#   SEEDS=0,1   seeds to run (default: the experiment's, 0,1)
#   EXPERIMENT=small_batch  RESULTS=results/small_batch  NORMBENCH=path/to/normbench
# Runs land in runs/$EXPERIMENT/. A failed job does not stop the others: the report is still
# written and the script exits 1. Ctrl-C or SIGTERM: every running job checkpoints at its next
# step, the script exits 130 (143) without a report, and the same command resumes the study.
set -euo pipefail
normbench=${NORMBENCH:-normbench}
experiment=${EXPERIMENT:-small_batch}
results=${RESULTS:-results/$experiment}
jobs=${JOBS:-1}
seeds=${SEEDS:-0,1}
launcher=()
if [ "$jobs" -gt 1 ]; then
  launcher=(hydra/launcher=joblib)
  export NORMBENCH_JOBS=$jobs
fi
# In the background so that a SIGTERM sent to this script alone reaches normbench too (a
# terminal's Ctrl-C reaches it directly; forwarded as SIGTERM, it does not count twice).
"$normbench" train -m "experiment=$experiment" "seed=$seeds" ${launcher[@]+"${launcher[@]}"} "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM
while true; do # a signal ends `wait` early: wait again until normbench has exited
  status=0
  wait "$child" || status=$?
  kill -0 "$child" 2>/dev/null || break
done
[ $status -lt 128 ] || exit $status # stopped by a signal: resumable, no report yet
"$normbench" report "runs/$experiment" --out "$results"
exit $status
