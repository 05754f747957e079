#!/usr/bin/env bash
# "Does gradient regularization help my model?" end to end, on a model and data from outside gradviz: torchvision's
# ResNet-18 on a 3-channel image folder written from real MNIST digits (tinted ink and paper, 32×32), trained as
# normal and as gradreg through the CLI, evaluated, interpreted, and reported (README: "Your own model and data").
#   bash scripts/worked_example.sh [WORK_DIR]     (default: ~/.cache/gradviz/worked-example)
# Environment: TRAIN (10000) and TEST (2000) images, EPOCHS (1), LAM (1), N (500) evaluated images. A model that is
# there already is kept (delete its card to train it again); an interrupted run resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-${GRADVIZ_CACHE:-$HOME/.cache/gradviz}/worked-example}"
mkdir -p "$work"
export GRADVIZ_HOME="$work/home"
py=.venv/bin/python
TRAIN=${TRAIN:-10000} TEST=${TEST:-2000} EPOCHS=${EPOCHS:-1} LAM=${LAM:-1} N=${N:-500}
[ -d "$work/colour-digits" ] || $py -m gradviz.data.colour_digits "$work/colour-digits" --train "$TRAIN" --test "$TEST"
$py -m gradviz data add colour-digits "$work/colour-digits" --replace
resnet=(--dataset colour-digits --model torchvision.models:resnet18 --model-kwargs '{"num_classes": 10}'
        --epochs "$EPOCHS" --batch-size 64 --resume)
models="$GRADVIZ_HOME/models"
[ -f "$models/resnet18-normal.json" ] || $py -m gradviz train "${resnet[@]}" --defense normal --name resnet18-normal
[ -f "$models/resnet18-gradreg.json" ] ||
  $py -m gradviz train "${resnet[@]}" --defense gradreg --lam "$LAM" --lam-warmup 0.2 --name resnet18-gradreg
pair=resnet18-normal,resnet18-gradreg
$py -m gradviz evaluate --dataset colour-digits --models "$pair" --attacks fgsm,tgsm --n "$N" --out "$work/evaluation"
$py -m gradviz interpret --dataset colour-digits --models "$pair" --methods gradient-logp,integrated-gradients \
  --n 200 --out "$work/interpretation"
$py -m gradviz reproduce --pair "$pair" --evaluation "$work/evaluation" --interpretation "$work/interpretation" \
  --out "$work/pair-report.md"
echo "report: $work/pair-report.md"
