"""`hangwatch sink`: consume the pipeline's topics and store them in ClickHouse."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer

from hangwatch.cli.common import console, fail_for, settings
from hangwatch.platform import gc_policy
from hangwatch.platform.settings import Settings
from hangwatch.sinks import convert
from hangwatch.sinks.backends import BackendError, where
from hangwatch.sinks.writer import SinkStats, run_sink


def sink(
    group_id: Annotated[str | None, typer.Option(help="Consumer group (default: sink.group_id).")] = None,
    batch_rows: Annotated[int | None, typer.Option(help="Flush when a table has this many rows buffered.")] = None,
    flush_interval: Annotated[float | None, typer.Option(help="Flush at least this often (seconds).")] = None,
    migrate: Annotated[bool, typer.Option(help="Apply pending migrations first (else: refuse to start).")] = True,
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics on 127.0.0.1:PORT.")] = None,
) -> None:
    """Store call-outcomes, its DLQ, hangup-rates, borrower-flags and hangup-alerts in ClickHouse.

    Offsets are committed only after ClickHouse accepted the rows; run several sinks with the
    same group to scale out. Stops cleanly on Ctrl-C / SIGTERM."""
    s = settings()
    # The driver logs a traceback for every failed connection attempt; during an outage the
    # sink's own paused/retrying/resumed lines say it once, clearly.
    logging.getLogger("clickhouse_driver").setLevel(logging.ERROR)
    updates = {k: v for k, v in {"group_id": group_id, "batch_rows": batch_rows,
                                 "flush_interval_s": flush_interval}.items() if v is not None}
    s = s.model_copy(update={"sink": s.sink.model_copy(update=updates)})
    gc_policy.configure(s.sink.gc_young_threshold)
    convert.use_decoder(s.privacy.decoder())  # ingest pseudonymisation, as the worker's
    port = metrics_port or s.metrics_port
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr="127.0.0.1")
        console.print(f"metrics on http://127.0.0.1:{port}/metrics")
    console.print(f"sink: Kafka {s.kafka.bootstrap_servers} (group {s.sink.group_id}) -> {where(s.clickhouse)}")
    try:
        stats = asyncio.run(_run(s, migrate))
    except (BackendError, RuntimeError, ValueError) as e:
        raise fail_for(e) from e
    rows = ", ".join(f"{t} {n}" for t, n in sorted(stats.rows.items())) or "nothing"
    console.print(f"sink stopped: stored {rows}; {sum(stats.rejected.values())} rows dead-lettered; "
                  f"{stats.retries} retries")


async def _run(s: Settings, migrate: bool) -> SinkStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await run_sink(s, stop, apply_migrations=migrate)


def register(app: typer.Typer) -> None:
    app.command("sink")(sink)
