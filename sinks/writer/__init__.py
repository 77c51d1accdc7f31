"""The sink: Kafka topics -> ClickHouse tables, at least once, stored exactly once.

Entry point for the CLI, tests and the demo: `await run_sink(settings, stop_event)`."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from hangwatch.platform.settings import Settings
from hangwatch.platform.timeparse import local_zone_name
from hangwatch.sinks import migrate
from hangwatch.sinks.backends import Backend, BackendError, Unavailable, database_name, open_backend
from hangwatch.sinks.tables import DATA_TABLES, SINK_BATCHES
from hangwatch.sinks.validate import RowValidator, load_column_types
from hangwatch.sinks.writer.flush import Flusher
from hangwatch.sinks.writer.loop import SinkLoop, SinkStats
from hangwatch.sinks.writer.router import Router

__all__ = ["SinkStats", "run_sink"]
log = logging.getLogger("hangwatch.sink")


async def run_sink(settings: Settings, stop: asyncio.Event, *, backend: Backend | None = None,
                   apply_migrations: bool = True) -> SinkStats:
    """Consume until `stop` is set; return the totals. Opens (and closes) its own backend
    unless one is given. With apply_migrations the schema is brought up to date first
    (safe with several sinks starting at once); otherwise a pending migration is an error."""
    own = backend is None
    store = backend if backend is not None else await asyncio.to_thread(open_backend, settings.clickhouse)
    try:
        db = database_name(settings.clickhouse)
        validators = await _prepare_store(store, db, settings, stop, apply_migrations)
        if validators is None:
            return SinkStats()
        worker = f"sink@{socket.gethostname()}:{os.getpid()}"
        topic_tables = {settings.kafka.topic(topic): table for table, topic in settings.sink.topics.items()}
        flusher = Flusher(store, db, worker, local_zone_name(settings), late_after_s=settings.worker.grace_s)
        loop = SinkLoop(settings, Router(topic_tables, validators, worker), flusher, stop)
        return await loop.run()
    finally:
        if own:
            store.close()


async def _prepare_store(store: Backend, db: str, settings: Settings, stop: asyncio.Event,
                         apply_migrations: bool) -> dict[str, RowValidator] | None:
    """Check or apply the schema and build the row validators; wait for ClickHouse if it is
    not reachable yet. None when stopped before that."""
    backoff = settings.sink.initial_retry_backoff_s
    while not stop.is_set():
        try:
            return await asyncio.to_thread(_schema_validators, store, db, settings, apply_migrations)
        except Unavailable as e:
            log.warning("ClickHouse not reachable at start (%s); retrying in %.1f s", e, backoff)
        try:
            await asyncio.wait_for(stop.wait(), backoff)
        except TimeoutError:
            backoff = min(backoff * 2, settings.sink.max_retry_backoff_s)
    return None


def _schema_validators(store: Backend, db: str, settings: Settings, apply_migrations: bool) -> dict[str, RowValidator]:
    if apply_migrations:
        for m in migrate.apply(store, db, settings.clickhouse.retention_days, cluster=settings.clickhouse.cluster,
                                   zookeeper_path=settings.clickhouse.zookeeper_path):
            log.info("applied migration %04d_%s", m.version, m.name)
    else:
        pending = [s.migration for s in migrate.status(store, db) if s.applied_at is None]
        if pending:
            raise BackendError(f"database {db!r} lacks migrations {[m.version for m in pending]}; "
                               "run `hangwatch migrate`")
    tables = [t.name for t in DATA_TABLES] + [SINK_BATCHES.name]
    types = load_column_types(store, db, tables)
    return {t.name: RowValidator(t.columns, types[t.name]) for t in DATA_TABLES}
