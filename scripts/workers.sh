# Parallel background workers for the study scripts (sourced, not run): start_worker, wait_workers.
# Background jobs of a script ignore Ctrl-C (SIGINT), so a Ctrl-C or a scheduler's SIGTERM to the
# script is passed on to every worker as SIGTERM: each checkpoints what it is doing and exits, and
# the study resumes when the same command is run again.
worker_pids=()
workers_stopping=0

_forward_stop() {
  workers_stopping=1
  echo "stopping ${#worker_pids[@]} workers (each checkpoints its current work); run the same command to resume" >&2
  [ ${#worker_pids[@]} -eq 0 ] || kill -TERM "${worker_pids[@]}" 2>/dev/null || true
}
trap _forward_stop INT TERM

# start_worker LOG COMMAND...: run COMMAND in the background, its output in LOG.
start_worker() {
  local log=$1
  shift
  mkdir -p "$(dirname "$log")"
  echo "$* -> $log"
  "$@" >"$log" 2>&1 &
  worker_pids+=($!)
}

# wait_workers: wait for every worker (again after a signal, until each has exited); exit 130 when
# stopped by a signal; return 1 when any worker failed.
wait_workers() {
  local status=0 code pid
  for pid in "${worker_pids[@]}"; do
    while true; do
      code=0
      wait "$pid" || code=$?
      kill -0 "$pid" 2>/dev/null || break
    done
    [ "$code" -eq 0 ] || status=1
  done
  worker_pids=()
  if [ $workers_stopping -eq 1 ]; then
    echo "stopped; run the same command to resume" >&2
    exit 130
  fi
  return $status
}
