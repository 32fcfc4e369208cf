#!/usr/bin/env bash
# Create (or update) the project environment in .venv/ — idempotent, safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
stamp=.venv/.topnas-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing topnas and its dependencies (torch==2.13.0 CPU build, ray, optuna, mlflow, ...)"
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi
