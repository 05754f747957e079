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
# Every white-box number checked with AutoAttack and Square (first 1,000 test digits; a robust model costs
# AutoAttack about 30 min per ε on one core, a broken one seconds).
$PY -m gradviz evaluate --dataset mnist --attacks fgsm,pgd,mifgsm,square,autoattack --eps 0,0.1,0.2,0.3 --n 1000 \
  --no-report --out docs/results/mnist-autoattack
# The paper-scale pair (trained by `zoo build mnist --only mnist-normal-paper` and `--only mnist-gradreg-paper`;
# in the zoo once `zoo adopt` took it, else among the recipe's finished models, made visible here):
# FGSM from both sources on all 10,000 digits, white-box PGD and MI-FGSM, gradients; then AutoAttack.
export GRADVIZ_USER_MODELS=${GRADVIZ_USER_MODELS:-${GRADVIZ_RESULTS:-$HOME/.cache/gradviz/experiments}/mnist/models}
$PY -m gradviz evaluate --dataset mnist --models mnist-normal-paper,mnist-gradreg-paper,mnist-normal,mnist-gradreg \
  --attacks fgsm,pgd,mifgsm --eps 0,0.1,0.2,0.3,0.4,0.5 --iterative-eps 0.1,0.2,0.3 --n 10000 \
  --out docs/results/mnist-paper-scale
$PY -m gradviz evaluate --dataset mnist --models mnist-normal-paper,mnist-gradreg-paper \
  --attacks fgsm,pgd,mifgsm,square,autoattack --eps 0,0.1,0.2,0.3 --n 1000 --no-report \
  --out docs/results/mnist-paper-scale-autoattack
# Explanation quality (about 35 min for MNIST, 25 for Fashion-MNIST) and the ground-truth datasets (a few minutes).
METHODS="--param integrated-gradients.n_steps=8 --param smoothgrad.samples=8"
$PY -m gradviz interpret --dataset mnist --n 1000 $METHODS --out docs/results/mnist-interpretability
$PY -m gradviz interpret --dataset fashion-mnist --n 1000 $METHODS --out docs/results/fashion-mnist-interpretability
# (relevance-rank says nothing on Decoy MNIST, whose evidence region is all but 16 pixels)
$PY -m gradviz interpret --dataset decoy-mnist --n 1000 --metrics relevance-mass,pointing-game $METHODS \
  --out docs/results/decoy-mnist-ground-truth
$PY -m gradviz interpret --dataset block-mnist --n 1000 --metrics relevance-mass,relevance-rank,pointing-game \
  $METHODS --out docs/results/block-mnist-ground-truth
# How many annotations does it take? 60 fine-tunes per decoy dataset on Ray (resumable: run it again after a stop).
$PY -m gradviz zoo curve decoy-mnist --write docs/results/decoy-mnist-annotation-curve
$PY -m gradviz zoo curve decoy-fashion-mnist --write docs/results/decoy-fashion-mnist-annotation-curve
$PY -m gradviz reproduce --mnist docs/results/mnist --mnist-beyond docs/results/mnist-mifgsm \
  --fashion docs/results/fashion-mnist \
  --interpretation docs/results/mnist-interpretability --interpretation docs/results/fashion-mnist-interpretability \
  --ground-truth docs/results/decoy-mnist-ground-truth --ground-truth docs/results/block-mnist-ground-truth \
  --paper-scale docs/results/mnist-paper-scale \
  --autoattack docs/results/mnist-autoattack --autoattack docs/results/mnist-paper-scale-autoattack \
  --annotation-curve docs/results/decoy-mnist-annotation-curve \
  --annotation-curve docs/results/decoy-fashion-mnist-annotation-curve \
  --preamble docs/reproduction_preamble.md --out docs/REPRODUCTION.md
