#!/usr/bin/env bash
# Evaluate the committed zoo on both datasets and regenerate docs/REPRODUCTION.md (CPU: a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
for ds in mnist fashion-mnist; do
  $PY -m gradviz evaluate --dataset "$ds" --attacks fgsm,tgsm,pgd --eps 0,0.1,0.2,0.3,0.4,0.5,0.6,0.7 \
    --n 1000 --out "docs/results/$ds"
done
$PY -m gradviz reproduce --mnist docs/results/mnist --fashion docs/results/fashion-mnist \
  --preamble docs/reproduction_preamble.md --out docs/REPRODUCTION.md
