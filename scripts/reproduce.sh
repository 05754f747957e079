#!/usr/bin/env bash
# Evaluate the committed zoo (MNIST: all 10,000 test images; Fashion-MNIST: the first 2,000) and regenerate
# docs/REPRODUCTION.md.
# CPU cost on our 2-core machine: MNIST about 45 min, its MI-FGSM run about 60 min on one thread, Fashion-MNIST
# about 20 min (docs/REPRODUCTION.md has the times).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
EPS=0,0.1,0.2,0.3,0.4,0.5,0.6,0.7
$PY -m gradviz evaluate --dataset mnist --attacks fgsm,tgsm,itgsm,pgd,jsma --eps "$EPS" --iterative-eps 0.3 \
  --iterative-n 1000 --l0-n 200 --n 10000 --out docs/results/mnist
$PY -m gradviz evaluate --dataset mnist --attacks mifgsm --eps 0,0.1,0.2,0.3,0.4,0.5 --n 10000 \
  --out docs/results/mnist-mifgsm
$PY -m gradviz evaluate --dataset fashion-mnist --attacks fgsm,tgsm,pgd --eps "$EPS" --iterative-eps 0.1 \
  --n 2000 --out docs/results/fashion-mnist
$PY -m gradviz reproduce --mnist docs/results/mnist --mnist-beyond docs/results/mnist-mifgsm \
  --fashion docs/results/fashion-mnist \
  --preamble docs/reproduction_preamble.md --out docs/REPRODUCTION.md
