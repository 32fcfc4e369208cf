#!/usr/bin/env bash
# The README's test command: set up .venv if needed, then run the whole suite (unit + integration).
# Without arguments: the unit tests on two pytest-xdist workers, then the integration tests (real Ray
# clusters, MLflow servers; marked `integration`) one at a time, since they size themselves to the
# machine's CPUs. Arguments go to a single plain pytest run instead, e.g.
# `bash scripts/test.sh -m "not integration"` for the fast subset or `bash scripts/test.sh tests/platform`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export RAY_USAGE_STATS_ENABLED=0 MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
pytest=(.venv/bin/python -m pytest -q --timeout 900)
if [ $# -gt 0 ]; then
  exec "${pytest[@]}" --durations=25 "$@"
fi
unit=0 integration=0
echo "[test] unit tests (not integration), 2 workers"
"${pytest[@]}" --durations=10 -m "not integration" -n 2 || unit=$?
if [ -n "${TOPNAS_CI_CHROMIUM_DONE:-}" ]; then  # .ci/run's background Chromium install
  echo "[test] waiting for the Chromium install that .ci/run started"
  while [ ! -e "$TOPNAS_CI_CHROMIUM_DONE" ]; do sleep 2; done
fi
echo "[test] integration tests, one at a time"
"${pytest[@]}" --durations=25 -m integration || integration=$?
echo "[test] unit: exit ${unit}; integration: exit ${integration}"
if [ "$unit" -ne 0 ]; then exit "$unit"; fi
exit "$integration"
