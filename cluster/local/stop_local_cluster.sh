#!/usr/bin/env bash
# Stop the local cluster started by start_local_cluster.sh, all nodes at once, by process id.
#
#   cluster/local/stop_local_cluster.sh [--state DIR] [--keep-logs] [--grace SECONDS]
#
# Each node is a `ray start --block` process leading its own session. SIGTERM to it makes Ray shut
# that node down (raylet, GCS, dashboard, workers); whatever is still alive in that session after the
# grace period gets SIGKILL, again by pid. Other Ray clusters on the machine are never touched
# (no `ray stop`). The Ray temp folder is removed unless --keep-logs; node logs stay in <state>/*.log.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state="${TOPNAS_HOME:-$repo/runs}/ray-local"
keep_logs=0
grace=30

while [ $# -gt 0 ]; do
  case "$1" in
    --state) state="$2"; shift 2 ;;
    --keep-logs) keep_logs=1; shift ;;
    --grace) grace="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "stop_local_cluster: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ ! -d "$state" ]; then
  echo "stop_local_cluster: no state folder $state; nothing to stop"
  exit 0
fi

session_pids() {  # every pid whose session id is $1
  ps -eo pid=,sid= | awk -v s="$1" '$2 == s && $1 != s { print $1 }'
}

is_ray_start() {  # guard against a recycled pid
  local cmd
  cmd="$(tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null || true)"
  [[ "$cmd" == *ray* && "$cmd" == *start* ]]
}

node_pid() {  # pidfile -> the pid of a live `ray start` it names, else nothing; the pidfile is removed
  local pid
  pid="$(cat "$1" 2>/dev/null || true)"
  rm -f "$1"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && is_ray_start "$pid"; then echo "$pid"; fi
}

any_alive() {
  local pid
  for pid in "$@"; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}

# All nodes at once: SIGTERM, up to --grace seconds for them to shut down, then SIGKILL.
shopt -s nullglob
pids=()
for pidfile in "$state"/worker*.pid "$state"/head.pid; do
  [ -f "$pidfile" ] || continue
  pid="$(node_pid "$pidfile")"
  [ -n "$pid" ] || continue
  kill -TERM "$pid" 2>/dev/null || true
  pids+=("$pid")
  echo "[cluster] stopping $(basename "$pidfile" .pid) (pid $pid)"
done
deadline=$((SECONDS + grace))
while [ "${#pids[@]}" -gt 0 ] && any_alive "${pids[@]}" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
for pid in "${pids[@]}"; do
  if kill -0 "$pid" 2>/dev/null; then  # past the grace period: the node and everything in its session
    # shellcheck disable=SC2046
    kill -KILL "$pid" $(session_pids "$pid") 2>/dev/null || true
  fi
done

# Whatever the nodes left behind in their sessions (workers, agents): a moment to exit, then SIGKILL.
for _ in $(seq 25); do
  left=""
  for pid in "${pids[@]}"; do left+="$(session_pids "$pid") "; done
  [ -z "${left// /}" ] && break
  sleep 0.2
done
if [ -n "${left// /}" ]; then
  # shellcheck disable=SC2086
  kill -KILL $left 2>/dev/null || true
fi
if [ "${#pids[@]}" -gt 0 ]; then echo "[cluster] stopped ${#pids[@]} node(s)"; fi

if [ -f "$state/ray_tmp" ]; then
  ray_tmp="$(cat "$state/ray_tmp")"
  if [ "$keep_logs" = 0 ] && [[ "$ray_tmp" == /tmp/topnas-ray.* ]]; then
    rm -rf "$ray_tmp"
    rm -f "$state/ray_tmp"
  else
    echo "[cluster] Ray session logs kept in $ray_tmp"
  fi
fi
rm -f "$state/cluster.env" "$state/cluster.json"
