#!/usr/bin/env bash
# Create (or update) the project environment in .venv/ — idempotent, safe to re-run.
#
# The install goes through uv (from PyPI, into the venv) when pip's find-links hold the pinned CPU
# torch wheel: uv resolves the same versions as pip (same PyPI, same pins) in about 40% of pip's time
# here, which is CI time. uv does not read pip's configuration, so it is handed pip's find-links;
# without the local torch wheel it would fetch the multi-GB CUDA build, so then pip does the install.
# Bytecode is compiled at install time either way (this machine sets PYTHONDONTWRITEBYTECODE=1, so
# nothing would write .pyc files later and every process would compile torch and ray again).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.topnas-installed
if [ -f "$stamp" ] && [ ! pyproject.toml -nt "$stamp" ]; then
  exit 0
fi

torch_pin=$(sed -n 's/^ *"torch==\([^"]*\)".*/\1/p' pyproject.toml | head -1)
links=()
for dir in ${PIP_FIND_LINKS:-} $(.venv/bin/pip config get global.find-links 2>/dev/null || true); do
  links+=(--find-links "$dir")
  if compgen -G "$dir/torch-${torch_pin}+cpu-*.whl" >/dev/null; then local_torch=1; fi
done

echo "[setup] installing topnas and its dependencies (torch==${torch_pin} CPU build, ray, optuna, mlflow, ...)"
installed=0
if [ "${local_torch:-0}" = 1 ] && [ "${TOPNAS_SETUP_PIP:-0}" != 1 ] && .venv/bin/pip install -q uv 2>/dev/null; then
  if .venv/bin/uv pip install -q --python .venv/bin/python "${links[@]}" --compile-bytecode -e '.[test]'; then
    installed=1
  else
    echo "[setup] uv failed; installing with pip instead"
  fi
fi
if [ "$installed" = 0 ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
fi
touch "$stamp"
