#!/usr/bin/env bash
# `make bench`: install, make sure Kafka and the ClickHouse server run, run the benchmarks
# (python -m bench; see bench/README.md), stop only what this script started.
# Extra args go to `python -m bench`, e.g. deploy/local/bench.sh --events 100000 --skip chdb
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$HERE/bootstrap.sh"
start_services kafka clickhouse
cd "$ROOT"
"$ROOT/.venv/bin/python" -m bench "$@"
