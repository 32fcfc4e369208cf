#!/usr/bin/env bash
# Start a local multi-node Ray cluster on ONE machine: a head node plus N worker nodes, each its own
# `ray start` (own raylet, own resources), so multi-node code paths (job submission, placement over
# nodes, runtime_env shipping, MLflow over HTTP) can be exercised without a cloud.
#
#   cluster/local/start_local_cluster.sh [--workers N] [--head-cpus N] [--worker-cpus N]
#       [--memory BYTES] [--object-store-memory BYTES] [--state DIR] [--dashboard-port PORT]
#       [--auth token|disabled]
#   source <state>/cluster.env      # RAY_ADDRESS, RAY_API_SERVER_ADDRESS, RAY_AUTH_MODE, ...
#   cluster/local/stop_local_cluster.sh [--state DIR]
#
# Choices:
# - Every node gets --num-cpus, --memory and --object-store-memory: nodes on one machine would each
#   advertise the whole machine otherwise.
# - Everything binds to 127.0.0.1 (GCS, dashboard, jobs API): nothing is reachable from the network.
# - Token auth (RAY_AUTH_MODE=token, the default here) with a token file of this cluster's own
#   (<state>/auth_token, passed as RAY_AUTH_TOKEN_PATH), so ~/.ray/auth_token is never touched.
#   Drivers, `ray job submit` and JobSubmissionClient need the same two variables: source cluster.env.
# - Each node runs `ray start --block` in its own session; stop_local_cluster.sh ends exactly those
#   sessions by process id. It never calls `ray stop`, which would kill every Ray process on the host.
#
# Environment: TOPNAS_PYTHON (default <repo>/.venv/bin/python) picks the interpreter whose `ray` runs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

workers=1
head_cpus=1
worker_cpus=1
memory=$((2 * 1024 * 1024 * 1024))
object_store=$((256 * 1024 * 1024))
state="${TOPNAS_HOME:-$repo/runs}/ray-local"
dashboard_port=""
auth="${RAY_AUTH_MODE:-token}"
timeout_s=180

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --workers) workers="$2"; shift 2 ;;
    --head-cpus) head_cpus="$2"; shift 2 ;;
    --worker-cpus) worker_cpus="$2"; shift 2 ;;
    --memory) memory="$2"; shift 2 ;;
    --object-store-memory) object_store="$2"; shift 2 ;;
    --state) state="$2"; shift 2 ;;
    --dashboard-port) dashboard_port="$2"; shift 2 ;;
    --auth) auth="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "start_local_cluster: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

for pair in "workers:$workers" "head-cpus:$head_cpus" "worker-cpus:$worker_cpus" \
            "memory:$memory" "object-store-memory:$object_store" "timeout:$timeout_s"; do
  name="${pair%%:*}"; value="${pair#*:}"
  if ! [[ "$value" =~ ^[0-9]+$ ]]; then
    echo "start_local_cluster: --$name: got '$value'; allowed: a non-negative integer" >&2; exit 2
  fi
done
case "$auth" in
  token|disabled) ;;
  *) echo "start_local_cluster: --auth: got '$auth'; allowed: token, disabled" >&2; exit 2 ;;
esac

py="${TOPNAS_PYTHON:-$repo/.venv/bin/python}"
if [ ! -x "$py" ]; then
  echo "start_local_cluster: no Python at $py (run scripts/setup_env.sh or set TOPNAS_PYTHON)" >&2; exit 2
fi
ray_bin="$(dirname "$py")/ray"
if [ ! -x "$ray_bin" ]; then
  echo "start_local_cluster: no ray executable next to $py (pip install 'ray[default]')" >&2; exit 2
fi

mkdir -p "$state"
state="$(cd "$state" && pwd)"
if [ -f "$state/head.pid" ] && kill -0 "$(cat "$state/head.pid")" 2>/dev/null; then
  echo "start_local_cluster: a cluster from $state is already running (head pid $(cat "$state/head.pid"));" \
       "stop it with cluster/local/stop_local_cluster.sh --state $state" >&2
  exit 1
fi
rm -f "$state"/*.pid "$state"/cluster.env "$state"/cluster.json

# Ray keeps Unix sockets under its temp dir; their paths must stay under ~107 characters, so the
# temp dir is a short folder in /tmp (recorded, and removed by stop_local_cluster.sh).
ray_tmp="$(mktemp -d /tmp/topnas-ray.XXXXXX)"
echo "$ray_tmp" > "$state/ray_tmp"

export RAY_USAGE_STATS_ENABLED=0
export RAY_AUTH_MODE="$auth"
if [ "$auth" = token ]; then
  token_file="$state/auth_token"
  if [ ! -s "$token_file" ]; then
    (umask 077 && "$py" -c 'import secrets; print(secrets.token_hex(32))' > "$token_file")
  fi
  chmod 600 "$token_file"
  export RAY_AUTH_TOKEN_PATH="$token_file"
else
  unset RAY_AUTH_TOKEN_PATH RAY_AUTH_TOKEN || true
fi

# Ports the OS hands out (ephemeral range, so outside Ray's default worker ports 10002-19999).
free_ports() {
  "$py" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
read -r -a ports <<< "$(free_ports $((3 + 2 * (workers + 1))))"
gcs_port="${ports[0]}"
client_port="${ports[1]}"
dashboard_port="${dashboard_port:-${ports[2]}}"

# Start `ray start --block` in a new session (pid == session id) and print its pid.
spawn() {
  local log="$1"; shift
  "$py" - "$log" "$@" <<'EOF'
import subprocess, sys
log = open(sys.argv[1], "ab")
proc = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        start_new_session=True)
print(proc.pid)
EOF
}

wait_started() {  # pid log name
  local pid="$1" log="$2" name="$3" waited=0
  while ! grep -q "block forever" "$log" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "start_local_cluster: $name exited during start; last lines of $log:" >&2
      tail -n 30 "$log" >&2
      "$here/stop_local_cluster.sh" --state "$state" >/dev/null 2>&1 || true
      exit 1
    fi
    if [ "$waited" -ge "$timeout_s" ]; then
      echo "start_local_cluster: $name not up after ${timeout_s}s; last lines of $log:" >&2
      tail -n 30 "$log" >&2
      "$here/stop_local_cluster.sh" --state "$state" >/dev/null 2>&1 || true
      exit 1
    fi
    sleep 1; waited=$((waited + 1))
  done
}

common=(--block --disable-usage-stats --node-ip-address 127.0.0.1
        --memory "$memory" --object-store-memory "$object_store")

echo "[cluster] head: $head_cpus CPU, memory $memory B, object store $object_store B (auth: $auth)"
head_pid="$(spawn "$state/head.log" "$ray_bin" start --head "${common[@]}" \
  --num-cpus "$head_cpus" --port "$gcs_port" \
  --include-dashboard true --dashboard-host 127.0.0.1 --dashboard-port "$dashboard_port" \
  --ray-client-server-port "$client_port" --dashboard-agent-listen-port "${ports[3]}" \
  --temp-dir "$ray_tmp/head")"
echo "$head_pid" > "$state/head.pid"
wait_started "$head_pid" "$state/head.log" "head node"

for i in $(seq 1 "$workers"); do
  echo "[cluster] worker $i: $worker_cpus CPU, memory $memory B, object store $object_store B"
  w_pid="$(spawn "$state/worker$i.log" "$ray_bin" start --address "127.0.0.1:$gcs_port" "${common[@]}" \
    --num-cpus "$worker_cpus" --dashboard-agent-listen-port "${ports[$((3 + 2 * i))]}" \
    --temp-dir "$ray_tmp/worker$i")"
  echo "$w_pid" > "$state/worker$i.pid"
  wait_started "$w_pid" "$state/worker$i.log" "worker $i"
done

address="127.0.0.1:$gcs_port"
dashboard="http://127.0.0.1:$dashboard_port"
{
  echo "# source this file to talk to the local Ray cluster in $state"
  echo "export RAY_ADDRESS=$address"
  echo "export RAY_API_SERVER_ADDRESS=$dashboard"
  echo "export RAY_AUTH_MODE=$auth"
  if [ "$auth" = token ]; then echo "export RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH"; fi
} > "$state/cluster.env"
"$py" - "$state/cluster.json" "$address" "$dashboard" "$auth" "${RAY_AUTH_TOKEN_PATH:-}" "$ray_tmp" \
  "$((workers + 1))" <<'EOF'
import json, sys
path, address, dashboard, auth, token_path, ray_tmp, nodes = sys.argv[1:]
json.dump({"address": address, "dashboard_url": dashboard, "auth_mode": auth,
           "auth_token_path": token_path or None, "ray_tmp": ray_tmp, "nodes": int(nodes)},
          open(path, "w"), indent=2)
EOF

echo "[cluster] up: $((workers + 1)) nodes"
echo "  address:    $address"
echo "  dashboard:  $dashboard   (also the Jobs API; bound to 127.0.0.1 only)"
echo "  auth:       RAY_AUTH_MODE=$auth${RAY_AUTH_TOKEN_PATH:+ RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH}"
echo "  env:        source $state/cluster.env"
echo "  submit:     topnas promote ... --address $dashboard   |   ray job submit --address $dashboard -- ..."
echo "  stop:       $here/stop_local_cluster.sh --state $state"
