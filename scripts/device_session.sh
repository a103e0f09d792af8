#!/usr/bin/env bash
# One GPU session on the lent device machine, as one call: the CUDA tests first, then the step
# benchmark (eager, and the trainer's CUDA options), then as many packed sweep cells as the time
# left allows; what finished comes back as a records archive. Prepare here first with
# scripts/device_prepare.sh, then call the device tool with
#   command: bash scripts/device_session.sh SECONDS [SWEEP ARGS...]     carry: [".device"]
# SECONDS is this call's budget (leave a minute under timeout_s); SWEEP ARGS default to Table 3's
# seeds 2-3 (crsbench's protocol), 8 runs sharing the GPU. Everything is logged under $OUT:
#   cuda_tests.log, step.log, sweep.log, records.tar.gz (crsbench runs --unarchive it here).
# DEVICE_SMOKE=1 runs the same steps on a CPU (no CUDA tests, the Transformer's step on 4 samples, a tiny sweep):
# how the script itself is checked without a GPU (tests/test_device_session.py).
set -uo pipefail
BUDGET=${1:?usage: device_session.sh SECONDS [SWEEP ARGS...]}
shift
START=$(date +%s)
STAMP=$(date -u +%Y-%m-%dT%H:%M:%S)
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
left() { echo $((BUDGET - ($(date +%s) - START))); }
say() { echo "=== $(date -u +%H:%M:%S) [$(left) s left] $*" | tee -a "$OUT/session.log"; }

PY=${PYTHON:-python3}
SITE=${DEVICE_SITE:-/tmp/crsbench_site}
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .device/whl/*.whl \
  || { say "installing the carried wheels failed"; exit 1; }
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export CRSBENCH_DATA=${DEVICE_DATA:-/tmp/crsbench_data} CRSBENCH_CACHE=${DEVICE_CACHE:-/tmp/crsbench_cache}
mkdir -p "$CRSBENCH_DATA" "$CRSBENCH_CACHE"
tar xzf .device/data.tar.gz -C "$CRSBENCH_DATA" && tar xf .device/cache.tar -C "$CRSBENCH_CACHE" \
  || { say "unpacking the carried data or cache failed"; exit 1; }
say "installed; $("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())')"

if [ -z "${DEVICE_SMOKE:-}" ]; then
  say "CUDA tests"
  timeout 240 "$PY" -m pytest -q -x tests/test_cuda.py -p no:cacheprovider > "$OUT/cuda_tests.log" 2>&1
  say "CUDA tests: rc $? ($(tail -n 1 "$OUT/cuda_tests.log"))"
  DEVICE=cuda
else
  DEVICE=cpu
fi

say "step benchmark on $DEVICE"
if [ -z "${DEVICE_SMOKE:-}" ]; then STEP_ARGS=${STEP_ARGS:---batches 16 --passes 2}; else STEP_ARGS=${STEP_ARGS:---model transformer --batches 1 --batch 4}; fi
# shellcheck disable=SC2086
timeout 180 "$PY" benchmarks/conversation_step.py --device "$DEVICE" $STEP_ARGS > "$OUT/step.log" 2>&1
say "step benchmark: rc $? ($(grep '^ratio' "$OUT/step.log"))"

if [ $# -eq 0 ]; then
  if [ -z "${DEVICE_SMOKE:-}" ]; then
    set -- sweeps/table3_redial.yaml --seeds 2 3 --workers 8 --runs-per-gpu 8
  else
    set -- sweeps/quick.yaml --rows popularity-quick
  fi
fi
RESERVE=${RESERVE_S:-45}                   # to stop the sweep (its runs checkpoint) and archive
SWEEP_S=$(( $(left) - RESERVE ))
if [ "$SWEEP_S" -gt 30 ]; then
  say "sweep for $SWEEP_S s: $*"
  timeout --signal=INT --kill-after=30 "$SWEEP_S" "$PY" -m crsbench sweep "$@" > "$OUT/sweep.log" 2>&1
  say "sweep: rc $? (124: stopped at the deadline; its unfinished runs are lost with this machine)"
else
  say "no time left for a sweep"
fi
"$PY" -m crsbench runs --archive "$OUT/records.tar.gz" --since "$STAMP" >> "$OUT/session.log" 2>&1
say "archived the runs finished since $STAMP: $(tar tzf "$OUT/records.tar.gz" 2>/dev/null | grep -c 'run.json$') run(s)"
