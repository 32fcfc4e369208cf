#!/usr/bin/env bash
# The README's test command: set up .venv if needed, then run the whole suite (unit + integration).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not integration"` for the fast subset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export RAY_USAGE_STATS_ENABLED=0 MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
exec .venv/bin/python -m pytest -q --timeout 900 --durations=25 "$@"
