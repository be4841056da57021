#!/usr/bin/env bash
# The test command: lint, type-check and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_venv requirements-dev.txt
export DJANGO_SETTINGS_MODULE=assistant_site.settings.test
compile_translations
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy .
echo "==> import-linter"
.venv/bin/lint-imports
echo "==> frontend: type-check, unit tests (vitest), build"
build_frontend
(cd frontend && npm run --silent test)
ensure_test_packages
echo "==> migrations match the models"
.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null
echo "==> pytest"
.venv/bin/pytest "$@"
