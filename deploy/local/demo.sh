#!/usr/bin/env bash
# The README's demo command (make demo): install, start the local Kafka, run simulator ->
# worker -> sink -> embedded ClickHouse (chdb) with a live summary, stop Kafka if this script
# started it. Extra args go to `hangwatch demo` (e.g. --duration 120 --rate 500 --history-hours 6
# --lang en). History with a spike is replayed first, so flags and a spike alert show within a minute.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$HERE/bootstrap.sh"
start_services kafka
cd "$ROOT"
"$ROOT/.venv/bin/hangwatch" demo "$@"
