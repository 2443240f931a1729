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
# Each phase is one grid of `normbench eval -m`, its runs split over the workers.
phases=(
  "mode=running,adapt corruption=none"
  "mode=running,adapt,batch,partial,tent corruption=$corruptions severity=$severities"
  "mode=adapt samples=$k_samples corruption=$corruptions severity=3"
  "mode=partial prior=$n_priors batch_size=8 corruption=$corruptions severity=3"
  "kl=true mode=running,adapt corruption=none,gaussian_noise,contrast,fog severity=3"
)
for p in "${!phases[@]}"; do
  read -r -a grid <<<"${phases[p]}"
  echo "-- phase $((p + 1))/${#phases[@]}: ${phases[p]}"
  for ((j = 0; j < jobs; j++)); do
    mine=()
    for ((i = j; i < ${#runs[@]}; i += jobs)); do mine+=("${runs[i]}"); done
    [ ${#mine[@]} -eq 0 ] && continue
    start_worker "runs/domain_shift-eval$((p + 1))-$j.log" "$normbench" eval "${mine[@]}" -m done=skip "${grid[@]}"
  done
  wait_workers || status=1
done
[ $status -eq 0 ] || echo "some training or evaluation failed; see runs/domain_shift-*.log" >&2

"$normbench" report runs/domain_shift --out "$results"
exit $status
