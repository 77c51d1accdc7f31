# Shared helpers for the local service scripts (sourced, not executed).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# Runtime state (data, logs, pid files) lives in the project, ignored by git.
STATE_DIR="${HANGWATCH_LOCAL_STATE:-$ROOT/.local}"
CACHE_DIR="${HANGWATCH_CACHE:-$HOME/.cache/hangwatch}"
mkdir -p "$STATE_DIR" "$CACHE_DIR"

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }

# wait_port HOST PORT SECONDS: succeed once something accepts TCP connections.
wait_port() {
  local host=$1 port=$2 secs=$3 i
  for ((i = 0; i < secs * 5; i++)); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid PIDFILE NAME: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
  local pidfile=$1 name=$2 pid i
  if ! pid_alive "$pidfile"; then log "$name is not running"; rm -f "$pidfile"; return 0; fi
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then log "$name did not stop in 30 s; killing"; kill -9 "$pid" || true; fi
  rm -f "$pidfile"
  log "$name stopped"
}

# start_services NAME...: start each local service that is not running and stop exactly those
# when the calling script exits (keeps a developer's already-running services untouched).
start_services() {
  STARTED_SERVICES=()
  trap '_rc=$?; for _s in "${STARTED_SERVICES[@]}"; do "$HERE/$_s.sh" stop || true; done; exit $_rc' EXIT INT TERM
  local svc
  for svc in "$@"; do
    if ! "$HERE/$svc.sh" status >/dev/null 2>&1; then
      "$HERE/$svc.sh" start
      STARTED_SERVICES+=("$svc")
    fi
  done
}
