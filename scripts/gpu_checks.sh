#!/usr/bin/env bash
# The GPU checks of issue 12, as one script for a lent GPU machine: the GPU tests, `bench train`
# against torchvision's reference loop in all four modes, `--compare-ops` (operator by operator,
# ours vs the reference) and every CNN variant in eager fp32/bf16; 560 s of limits in all. Each
# step has its own time limit, so that a slow step costs only itself; the CSVs and PNGs are
# copied to OUTDIR after each step.
#
# Usage: scripts/gpu_checks.sh OUTDIR        (PYTHON=python3; run from the repository root)
#
# On the lent machine (device tool), which has torch but not hydra: carry the wheels of
# hydra-core, omegaconf and antlr4-python3-runtime in an excluded folder .whl/ (README of the
# device tool; antlr4 4.9.3 has no wheel on PyPI: `pip wheel --no-deps antlr4-python3-runtime==4.9.3`)
# and run: python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
# PYTHONPATH=/tmp/site bash scripts/gpu_checks.sh $OUT
# Then, on the machine with the repository: copy OUTDIR's iteration-cuda.*, norms-cuda.* and
# ops-vs-reference-cuda.csv into results/bench/ and run
# `normbench bench train --readme-only --out results/bench` to rewrite the README section (without
# --out, the benches read and write runs/bench).
set -u
out=${1:?usage: scripts/gpu_checks.sh OUTDIR}
py=${PYTHON:-python3}
mkdir -p "$out"
log="$out/gpu_checks.log"
export PYTHONUNBUFFERED=1
work=$(mktemp -d)/bench
cp -r results/bench "$work"  # the README's other sections are kept and rewritten beside ours

step() {  # step LIMIT_S COMMAND...: run with a time limit, log its output and how it ended
  local limit=$1 t0 rc
  shift
  echo "== $* (limit ${limit} s)" | tee -a "$log"
  t0=$(date +%s)
  timeout --signal=INT --kill-after=15 "$limit" "$@" >>"$log" 2>&1
  rc=$?
  echo "== exit $rc after $(($(date +%s) - t0)) s" | tee -a "$log"
  cp "$work"/iteration-cuda.* "$work"/norms-cuda.* "$work"/ops-vs-reference-cuda.csv "$out"/ \
    2>/dev/null || true
}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  "$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
  nproc
  uptime
} >"$out/device.txt" 2>&1
cat "$out/device.txt"
conditions="lent GPU machine (device tool), this script the only workload; load average $(cut -d' ' -f1 /proc/loadavg) on $(nproc) cores at the start"

# In order of what the issue still needs: the GPU tests (the bf16 ones after `group` have not
# run on a GPU), ours vs torchvision's reference in all four modes (timing only), where the bf16
# gap comes from (operator by operator), then every variant's eager timing (6 compiles of
# ResNet-50 in the second step, about 35 s each on the H200).
step 110 "$py" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py tests/test_fastpath.py \
  tests/test_data_augment.py tests/test_corruptions_api.py
step 230 "$py" -m normbench bench train --gpu-defaults --variants batch --reference --no-profile \
  --repeats 8 --out "$work" --conditions "$conditions"
step 120 "$py" -m normbench bench train --gpu-defaults --modes eager-bf16,compiled-bf16 \
  --compare-ops --steps 5 --out "$work" --conditions "$conditions"
step 100 "$py" -m normbench bench train --gpu-defaults --modes eager-fp32,eager-bf16 \
  --variants batch_renorm,ghost_batch,group,layer,frn,evonorm,ws_group --no-profile --no-reference \
  --append --out "$work" --conditions "$conditions"
# bench norms on CUDA ran on the lease of 2026-11-30 (norms-cuda.csv); within one command's
# 10 minutes it does not fit beside the steps above.
grep -E "passed|failed|error" "$log" | tail -5
ls -la "$out"
