#!/usr/bin/env bash
# The README's test command (make test): install, start Kafka and ClickHouse, run the whole
# pytest suite against them, stop what this script started. Extra args go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$HERE/bootstrap.sh"
started=()
cleanup() {
  local rc=$?
  for svc in "${started[@]}"; do "$HERE/$svc.sh" stop || true; done
  exit $rc
}
trap cleanup EXIT INT TERM
for svc in kafka clickhouse; do
  if ! "$HERE/$svc.sh" status >/dev/null 2>&1; then
    "$HERE/$svc.sh" start
    started+=("$svc")
  fi
done
cd "$ROOT"
"$ROOT/.venv/bin/hangwatch" topics create >/dev/null
"$ROOT/.venv/bin/python" -m pytest "$@"
