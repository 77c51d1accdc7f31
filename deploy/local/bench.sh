#!/usr/bin/env bash
# `make bench`: install, make sure Kafka and the ClickHouse server run, run the benchmarks
# (python -m bench; see bench/README.md), stop only what this script started.
# Extra args go to `python -m bench`, e.g. deploy/local/bench.sh --events 100000 --skip chdb
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
"$ROOT/.venv/bin/python" -m bench "$@"
