#!/usr/bin/env bash
# The README's main job: set up .venv if needed, then fixture -> sweep -> Pareto front in MLflow -> promotion.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export RAY_USAGE_STATS_ENABLED=0
exec .venv/bin/topnas demo "$@"
