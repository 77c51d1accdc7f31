"""Naive Faust: the pipeline as Faust's documentation teaches it, to compare against.

- A `faust.Record` model of the call event (JSON, isodates, validation=True), one agent
  iterating the stream event by event (`async for event in stream`).
- Exactly-once by a `seen` Table keyed by event_id (one changelog message per new event).
- Windowed tables `.tumbling(size, expires=2 h).relative_to_field(CallEvent.occurred_at)`,
  each `table[key] += 1` one update (and one changelog message) per event per dimension:
      branch   x 60 s    key "<branch>|<outcome>"
      campaign x 300 s   key "<campaign>|<outcome>"
      all      x 3600 s  key "all|<outcome>"
  That is 3 (dimension, size) pairs; hangwatch counts 10 dimensions x 3 sizes = 30 cells per
  event plus borrower flags, so the naive pipeline does about a tenth of the work per event.
- A ClickHouse insert per small batch (500 events or 1 s): the raw events and the current
  value of every window cell touched, with clickhouse-driver, from the agent itself.
- No contract check beyond the model's validation (plus outcome and time range checks), no DLQ, no borrower flags,
  no merge across partitions: with one worker every key lives in one process, which is the
  only setup it is run in (more workers would need `group_by` repartitioning per dimension).

Run by the benchmark as:
    python -m bench.peers.naive_faust --prefix P --app-id A --ch-url clickhouse://... --db D --status FILE
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import faust

OUTCOMES = ("completed", "hung_up", "refused", "wrong_party", "declined", "no_answer", "busy", "voicemail",
            "invalid_number")
DIMS = (("branch", 60), ("campaign", 300), ("all", 3600))
FLUSH_EVENTS = 500
FLUSH_SECONDS = 1.0

DDL = (
    """CREATE TABLE IF NOT EXISTS {db}.naive_rates (window_size_s UInt32, window_start UInt32, dimension String,
    value String, outcome String, n UInt32, version UInt64)
    ENGINE = ReplacingMergeTree(version) ORDER BY (window_size_s, window_start, dimension, value, outcome)""",
    """CREATE TABLE IF NOT EXISTS {db}.naive_events (event_id String, borrower_id String, occurred_at_ms UInt64,
    branch String, campaign String, outcome String) ENGINE = MergeTree() ORDER BY event_id""",
)


class CallEvent(faust.Record, isodates=True, validation=True, serializer="json"):
    event_id: str
    borrower_id: str
    occurred_at: datetime
    campaign: str
    channel: str
    branch: str
    outcome: str
    schema_version: int = 1
    call_id: str | None = None
    loan_id: str | None = None
    agent_id: str | None = None
    hangup_stage: str | None = None
    duration_s: float | None = None
    attempt_no: int | None = None
    pre_notified: bool | None = None
    credit_grade: str | None = None
    first_time_borrower: bool | None = None
    script_version: str | None = None


def build(prefix: str, app_id: str, ch_url: str, db: str, status: Path) -> faust.App:
    from clickhouse_driver import Client

    client = Client.from_url(ch_url)
    client.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    for ddl in DDL:
        client.execute(ddl.format(db=db))

    app = faust.App(app_id, broker="kafka://127.0.0.1:9092", store="memory://", topic_partitions=4,
                    web_enabled=False, consumer_auto_offset_reset="earliest", value_serializer="json")
    source = app.topic(f"{prefix}call-outcomes", value_type=CallEvent)
    seen = app.Table("seen", default=bool)
    tables = {dim: app.Table(f"calls-{dim}-{size}s", default=int).tumbling(
        size, expires=timedelta(hours=2)).relative_to_field(CallEvent.occurred_at)  # type: ignore[arg-type]
        for dim, size in DIMS}

    buf_rates: dict[tuple[int, int, str, str, str], int] = {}
    buf_events: list[tuple[Any, ...]] = []
    state: dict[str, Any] = {"first": None, "processed": 0, "last_flush": time.monotonic(), "version": 0}

    def flush() -> None:
        if buf_rates:
            state["version"] += 1
            v = time.time_ns() // 1000 + state["version"]
            client.execute(f"INSERT INTO {db}.naive_rates VALUES",
                           [(*k, n, v) for k, n in buf_rates.items()])
            buf_rates.clear()
        if buf_events:
            client.execute(f"INSERT INTO {db}.naive_events VALUES", buf_events)
            buf_events.clear()
        state["last_flush"] = time.monotonic()
        status.write_text(json.dumps({"first": state["first"], "processed": state["processed"]}))

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for event in stream:
            if state["first"] is None:
                state["first"] = time.time()
            state["processed"] += 1
            # the checks a careful naive author adds after the first crash on bad input
            ts = event.occurred_at.timestamp() if isinstance(event.occurred_at, datetime) else -1.0
            if event.outcome not in OUTCOMES or not 0 < ts < time.time() + 86_400 or seen[event.event_id]:
                continue
            seen[event.event_id] = True
            for dim, size in DIMS:
                value = "all" if dim == "all" else getattr(event, dim)
                key = f"{value}|{event.outcome}"
                table = tables[dim]
                table[key] += 1
                # .value() follows relative_to_field; .current() would use the message timestamp
                buf_rates[(size, int(ts // size * size), dim, value, event.outcome)] = table[key].value()
            buf_events.append((event.event_id, event.borrower_id, round(ts * 1000), event.branch,
                               event.campaign, event.outcome))
            if len(buf_events) >= FLUSH_EVENTS or time.monotonic() - state["last_flush"] >= FLUSH_SECONDS:
                flush()

    @app.timer(interval=FLUSH_SECONDS)
    async def flush_idle() -> None:
        if time.monotonic() - state["last_flush"] >= FLUSH_SECONDS:
            flush()

    return app


def stored(client: Any, db: str) -> dict[str, Any]:
    """Distinct events and the latest value of every cell, as the check needs them."""
    events = client.execute(f"SELECT uniqExact(event_id), count() FROM {db}.naive_events")[0]
    cells: dict[str, dict[str, int]] = {}
    for size, start, dim, value, outcome, n in client.execute(
            f"SELECT window_size_s, window_start, dimension, value, outcome, argMax(n, version) FROM {db}.naive_rates "
            "GROUP BY window_size_s, window_start, dimension, value, outcome"):
        cells.setdefault(f"{size}|{start}|{dim}|{value}", {})[outcome] = n
    return {"events_distinct": events[0], "events_rows": events[1], "cells": cells}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--app-id", required=True)
    ap.add_argument("--ch-url", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--status", required=True)
    a = ap.parse_args()
    app = build(a.prefix, a.app_id, a.ch_url, a.db, Path(a.status))
    sys.argv = sys.argv[:1]
    faust.Worker(app, loglevel="warn", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
