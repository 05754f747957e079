#!/usr/bin/env bash
# The device check, one script for a lent GPU machine (under 5 minutes on one GPU): the tests that take a
# device, run on it, then the timing table (dashboard step, a training step of each defense, every attack on
# 10,000 digits, the full 10,000-digit MNIST evaluation matrix) written as markdown.
#   bash scripts/gpu_check.sh                      # on cuda, writes gpu_check.md
#   bash scripts/gpu_check.sh --device cpu --n 300 --attack-n 200   # the dry run (what CI runs)
# Every option after the script's name goes to benchmarks.gpu_check; --device also picks the tests' device.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
device=cuda
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = "--device" ] && device=${args[$((i + 1))]:-cuda}
done
echo "== device tests on $device"
GRADVIZ_TEST_DEVICE=$device PYTHONPATH=. $PY -m pytest -q -p no:cacheprovider tests/house/test_device.py
echo "== timings on $device"
PYTHONPATH=. $PY -m benchmarks.gpu_check "$@"
