#!/usr/bin/env bash
# Install everything (system packages, virtualenv, test tools), start PostgreSQL, lint, run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --dev
GRADVIZ_TEST_PG_URL=$(bash scripts/start_postgres.sh | tail -1)
export GRADVIZ_TEST_PG_URL
.venv/bin/ruff check gradviz tests benchmarks app.py app_pages
exec .venv/bin/python -m pytest -q "$@"
