#!/usr/bin/env bash
# When a GPU or TPU is lent, run this first (docs/accelerators.md):
#
#     bash benchmarks/accelerator_first.sh [OUT]        # OUT: runs/accelerator_first
#
# Five steps, each cut at its own time limit so the whole stays within 10 minutes (600 s of
# limits); a step that fails or runs out of time is recorded and the next one runs:
#   devices      (30 s)  jax.devices(), the backend, nvidia-smi when present
#   lowering     (90 s)  tests/test_accelerator_lowering.py (the check that also runs on CPU)
#   bench       (240 s)  python -m agr_jax.benchmark --suite accelerator --repeats 1
#   device_loop (120 s)  benchmarks/device_loop.py --suite accelerator --windows 4
#   train       (120 s)  configs/utkface_accel.py for one epoch (115 steps; needs
#                        ../shared/utkface, prepared into runs/utk_tfds on first use)
# Writes OUT/<step>.log for each, OUT/bench_accel.json, OUT/train_accel/ (the run's
# metrics.jsonl) and OUT/summary.txt (one line per step: exit status, seconds; 124 = cut).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/accelerator_first}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$OUT"
: > "$OUT/summary.txt"

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2 start rc
  shift 2
  echo "== $name (at most ${limit} s): $*"
  start=$(date +%s)
  timeout --signal=INT --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "$name rc=$rc $(( $(date +%s) - start ))s" | tee -a "$OUT/summary.txt"
}

step devices 30 bash -c "$PY -c 'import jax; print(jax.default_backend(), jax.devices())'; \
  command -v nvidia-smi >/dev/null && nvidia-smi || true"
step lowering 90 "$PY" -m pytest -q -n 0 -p no:cacheprovider tests/test_accelerator_lowering.py
step bench 240 "$PY" -m agr_jax.benchmark --suite accelerator --repeats 1 \
  --json "$OUT/bench_accel.json"
step device_loop 120 "$PY" benchmarks/device_loop.py --suite accelerator --windows 4
step train 120 "$PY" -m agr_jax.train --config configs/utkface_accel.py \
  --workdir "$OUT/train_accel" --config.total_steps=115
echo "wrote $OUT (summary: $OUT/summary.txt)"
