#!/usr/bin/env bash
# The README's test command (make test): install, start Kafka and ClickHouse, run the whole
# pytest suite against them, stop what this script started. Extra args go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$HERE/bootstrap.sh"
start_services kafka clickhouse
cd "$ROOT"
"$ROOT/.venv/bin/hangwatch" topics create >/dev/null
"$ROOT/.venv/bin/python" -m pytest "$@"
