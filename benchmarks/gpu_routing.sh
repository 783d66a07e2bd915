#!/usr/bin/env bash
# Issue 13 item 2 in one short GPU job (about 4 minutes on one H200): the 7B-shaped random-weight
# backbone (32 x 4096, 288 tokens, bf16), teacher and routed student in the same process per run,
# eager vs CUDA-graphed route programs, batch 1 (latency) and batch 8 (throughput), the teacher
# against the time to read its weights once (H200: 4.8 TB/s); then item 3's GPU half, the shipped
# policies' host <-> device copies per act() (benchmarks/policy_transfers.py). JSON per run in $OUT.
#
#   OUT=gpu_out bash benchmarks/gpu_routing.sh                     # on the GPU machine
#   DEVICE=cpu SHAPE=shipped ITERS=20 bash benchmarks/gpu_routing.sh  # the same script on a CPU (proof it runs)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-gpu_out}
DEVICE=${DEVICE:-cuda}
SHAPE=${SHAPE:-7b}
ITERS=${ITERS:-50}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
# the checkout's .venv where there is one (make setup), else python3 (a GPU machine's own torch)
if [ -x .venv/bin/python ]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python3}; fi
if [ "$DEVICE" = cuda ]; then nvidia-smi -L; MODES="eager cuda_graphs"; else MODES="eager"; fi
for mode in $MODES; do
  for batch in 1 8; do
    timeout 240 $PY benchmarks/routing_overhead.py --device "$DEVICE" --shape "$SHAPE" --execution "$mode" \
      --batch "$batch" --keep 1.0 0.75 0.5 0.25 --warmup 5 --iters "$ITERS" --bandwidth-tbs 4.8 \
      --json "$OUT/routing_${SHAPE}_${mode}_b${batch}.json" 2>&1 | grep -v Warning | tail -n 9
    echo "$mode batch $batch: rc=${PIPESTATUS[0]}"
  done
done
# the policy's GPU path (issue 13 item 3): host <-> device copies and host waits per act(), shipped
# student vs teacher (expected for the student: one pinned HtoD copy, the decisions and the actions back)
for mode in $MODES; do
  timeout 120 $PY benchmarks/policy_transfers.py --device "$DEVICE" --execution "$mode" --frames "$ITERS" \
    --json "$OUT/policy_transfers_${mode}.json" 2>&1 | grep -v Warning | tail -n 3
  echo "policy_transfers $mode: rc=${PIPESTATUS[0]}"
done
ls -la "$OUT"
