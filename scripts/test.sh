#!/usr/bin/env bash
# Install everything (system packages, virtualenv, test tools), start PostgreSQL, lint, run the whole test suite.
#   bash scripts/test.sh            # what CI runs: every tier
#   bash scripts/test.sh --fast     # the unit tier: no slow, browser, postgres, cluster or packaging tests, no
#                                   # PostgreSQL server; installs only when .venv is missing
# Any other arguments go to pytest (e.g. -k saliency, tests/attacks/test_attacks.py).
set -euo pipefail
cd "$(dirname "$0")/.."
fast=false
if [ "${1:-}" = "--fast" ]; then
  fast=true
  shift
fi
if ! $fast || [ ! -x .venv/bin/python ]; then
  bash scripts/install.sh --dev
fi
.venv/bin/ruff check gradviz tests benchmarks app.py app_pages
if $fast; then
  exec .venv/bin/python -m pytest -q -m "not (slow or browser or postgres or cluster or packaging)" "$@"
fi
GRADVIZ_TEST_PG_URL=$(bash scripts/start_postgres.sh | tail -1)
export GRADVIZ_TEST_PG_URL
exec .venv/bin/python -m pytest -q --durations=25 "$@"  # the slowest tests, to keep CI near 20 min
