#!/usr/bin/env bash
# Domain-shift study (AdaBN, Schneider et al. 2020, Tent) at CPU scale: train the source models of
# experiment=domain_shift, evaluate each on every common corruption x severity x statistics mode
# with `normbench eval`, then write the report. Every phase resumes: finished runs are skipped by
# `normbench train`, finished evaluations by `normbench eval done=skip`.
# Usage: scripts/domain_shift.sh [extra Hydra overrides for training]
#   JOBS=2                 parallel processes (one CPU thread each; default 1)
#   SEEDS=0,1              seeds of the source models
#   CORRUPTIONS=all        a comma list of corruption names, or all (the 15)
#   SEVERITIES=1,2,3,4,5   K_SAMPLES=... N_PRIORS=...   (the AdaBN k curve and the partial N curve)
#   RESULTS=results/domain_shift  NORMBENCH=path/to/normbench
set -euo pipefail
normbench=${NORMBENCH:-normbench}
results=${RESULTS:-results/domain_shift}
jobs=${JOBS:-1}
seeds=${SEEDS:-0,1}
severities=${SEVERITIES:-1,2,3,4,5}
k_samples=${K_SAMPLES:-1,2,4,8,16,32,64,128,256,512,1000}
n_priors=${N_PRIORS:-0,1,2,4,8,16,32,64,128,256}
corruptions=${CORRUPTIONS:-all}
if [ "$corruptions" = all ]; then
  corruptions=gaussian_noise,shot_noise,impulse_noise,defocus_blur,glass_blur,motion_blur,zoom_blur,snow,frost,fog,brightness,contrast,elastic_transform,pixelate,jpeg_compression
fi
source "$(dirname "$0")/workers.sh"
IFS=, read -r -a seed_list <<<"$seeds"

echo "== training the source models (seeds $seeds) =="
for ((j = 0; j < jobs; j++)); do
  mine=()
  for ((i = j; i < ${#seed_list[@]}; i += jobs)); do mine+=("${seed_list[i]}"); done
  [ ${#mine[@]} -eq 0 ] && continue
  part=$(IFS=,; echo "${mine[*]}")
  start_worker "runs/domain_shift-train-seed$part.log" "$normbench" train -m experiment=domain_shift "seed=$part" "$@"
done
status=0
wait_workers || status=1

echo "== evaluating every run (corruptions x severities x modes) =="
mapfile -t runs < <(find runs/domain_shift -mindepth 2 -maxdepth 2 -name summary.json -exec dirname {} \; | sort)
[ ${#runs[@]} -gt 0 ] || { echo "no trained runs under runs/domain_shift" >&2; exit 1; }
# Models whose norm uses batch statistics (BN, Batch Renorm): the only ones statistics modes
# change. The others (GN, LN, FRN) are evaluated with running (their only statistics), adapt
# (recorded as not applied: the evidence that they gain nothing) and tent (which adapts their
# affine parameters); batch, partial and the k and N curves would repeat `running` for them.
bn_runs=()
other_runs=()
for run in "${runs[@]}"; do
  case "$run" in
    *source=*_batch | *source=*_batch_renorm) bn_runs+=("$run") ;;
    *) other_runs+=("$run") ;;
  esac
done
# Each phase is one grid of `normbench eval -m` over a set of runs, split over the workers.
phases=(
  "all|mode=running,adapt corruption=none"
  "bn|mode=running,adapt,batch,partial,tent corruption=$corruptions severity=$severities"
  "other|mode=running,adapt,tent corruption=$corruptions severity=$severities"
  "bn|mode=adapt samples=$k_samples corruption=$corruptions severity=3"
  "bn|mode=partial prior=$n_priors batch_size=8 corruption=$corruptions severity=3"
  "all|kl=true mode=running,adapt corruption=none,gaussian_noise,contrast,fog severity=3"
)
for p in "${!phases[@]}"; do
  which=${phases[p]%%|*}
  read -r -a grid <<<"${phases[p]#*|}"
  case "$which" in
    bn) set_runs=("${bn_runs[@]}") ;;
    other) set_runs=("${other_runs[@]}") ;;
    *) set_runs=("${runs[@]}") ;;
  esac
  echo "-- phase $((p + 1))/${#phases[@]} ($which runs: ${#set_runs[@]}): ${grid[*]}"
  for ((j = 0; j < jobs; j++)); do
    mine=()
    for ((i = j; i < ${#set_runs[@]}; i += jobs)); do mine+=("${set_runs[i]}"); done
    [ ${#mine[@]} -eq 0 ] && continue
    start_worker "runs/domain_shift-eval$((p + 1))-$j.log" "$normbench" eval "${mine[@]}" -m done=skip "${grid[@]}"
  done
  wait_workers || status=1
done
[ $status -eq 0 ] || echo "some training or evaluation failed; see runs/domain_shift-*.log" >&2

"$normbench" report runs/domain_shift --out "$results"
exit $status
