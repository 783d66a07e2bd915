#!/usr/bin/env bash
# One GPU session (about 8 minutes on one H200): trains the `small` (shipped) and `default`
# (benchmark) presets of the embedded-default pipeline on CUDA, benchmarks teacher vs
# student on the GPU, and runs the 7B-shaped backbone scaling benchmark. Results land in
# $OUT (default ./gpu_out). Needs torch with CUDA, transformers, opencv, matplotlib, pyyaml.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-gpu_out}
WORK=${WORK:-/tmp/actdistill_gpu}
mkdir -p "$OUT" "$WORK"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi -L; python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
for preset in small default; do
  start=$(date +%s)
  timeout 260 python3 -m actdistill_ros.cli demo --preset "$preset" --device cuda --bench-device cuda \
    --out "$WORK/$preset" 2>&1 | tail -n 30
  echo "preset $preset: rc=${PIPESTATUS[0]} in $(( $(date +%s) - start )) s"
done
timeout 100 python3 benchmarks/backbone_scaling.py --device cuda --json "$WORK/scaling_7b.json" 2>&1 | tail -n 12
# bring back: small checkpoints + every report (one tar), default checkpoints split under 16 MB
tar -C "$WORK" -cf "$OUT/small_and_reports.tar" --exclude='small/data' --exclude='small/runs/*.pt' --exclude='small/runs/*.safetensors' \
  --exclude='default/data' --exclude='default/runs' --exclude='default/teacher' --exclude='default/student' \
  small default/bench.json default/bench.md default/distill_metrics.json default/keep_ratio_curve.png \
  default/layer_frequency.png default/training_curves.png scaling_7b.json 2>&1 | tail -3
tar -C "$WORK/default" -cf - teacher student runs/teacher_done.json runs/probe_done.json runs/student_done.json \
  | split -b 15M - "$OUT/default_ckpt.tar.part-"
ls -la "$OUT"
