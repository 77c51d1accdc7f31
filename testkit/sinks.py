"""The sink under test: a migrated store, the router and batches without Kafka, the sink on its
own event loop in a thread, and private Kafka topics for one test.

CH_URL and KAFKA: the servers the tests use (HANGWATCH_TEST_CLICKHOUSE_URL, HANGWATCH_TEST_KAFKA).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import uuid
from collections.abc import Iterable
from typing import Any

from aiokafka import TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from hangwatch.platform.settings import ClickHouseSettings, Settings, SinkSettings
from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.sinks.backends import Backend
from hangwatch.sinks.rollup import COMPACT_KEY, COUNTS
from hangwatch.sinks.tables import DATA_TABLES
from hangwatch.sinks.validate import RowValidator, load_column_types
from hangwatch.sinks.writer import SinkStats, run_sink
from hangwatch.sinks.writer.batch import Batch
from hangwatch.sinks.writer.router import Router
from testkit.events import BASE_MS, Record, event_records, json_records
from testkit.fakes import FakeMessage
from testkit.oracles.rollups import CompactKey

CH_URL = os.environ.get("HANGWATCH_TEST_CLICKHOUSE_URL", "clickhouse://default@127.0.0.1:9000")
KAFKA = os.environ.get("HANGWATCH_TEST_KAFKA", "127.0.0.1:9092")


@dataclasses.dataclass
class Store:
    """A migrated, empty database on one backend."""

    kind: str  # "native" or "embedded"
    backend: Backend
    db: str
    ch: ClickHouseSettings

    def settings(self, **sink: object) -> Settings:
        return Settings(clickhouse=self.ch, sink=SinkSettings(**sink), log_level="INFO")  # type: ignore[arg-type]

    def counts(self) -> dict[str, int]:
        return {t: self.count(t) for t in ("call_events", "hangup_rates", "borrower_flags", "hangup_alerts",
                                           "dead_letters")}

    def count(self, table: str, final: bool = True) -> int:
        return int(self.backend.query(f"SELECT count() FROM {self.db}.{table}{' FINAL' if final else ''}").scalar())


# --- batches without Kafka ----------------------------------------------------------------

def router_for(store: Store) -> Router:
    """The sink's router for the store's tables (topic names equal table names)."""
    types = load_column_types(store.backend, store.db, [t.name for t in DATA_TABLES])
    validators = {t.name: RowValidator(t.columns, types[t.name]) for t in DATA_TABLES}
    return Router({t.name: t.name for t in DATA_TABLES}, validators, "sink@test")


def batch_of(router: Router, records: dict[str, list[Record]], now_s: int) -> Batch:
    """A batch as the sink would build it; topic names equal table names, offsets count up."""
    batch = Batch(t.name for t in DATA_TABLES)
    for table, recs in records.items():
        for off, (key, value) in enumerate(recs):
            msg = FakeMessage(table, 0, off, key, value, timestamp=BASE_MS)
            router.add(batch, TopicPartition(table, 0), msg, now_s)
    return batch


# --- an in-process sink --------------------------------------------------------------------

class SinkThread:
    """run_sink on its own event loop in a thread, stoppable from the test."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats: SinkStats | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="sink-under-test", daemon=True)

    def __enter__(self) -> SinkThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            self.stats = await run_sink(self.settings, self._stop)

        try:
            asyncio.run(main())
        except BaseException as e:  # handed to the test thread in stop()
            self.error = e
            self._ready.set()

    def stop(self, timeout: float = 90) -> SinkStats | None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the sink did not stop")
        if self.error is not None:
            raise self.error
        return self.stats


# --- Kafka -------------------------------------------------------------------------------

class Topics:
    """Uniquely named topics for the sink's five tables and a unique group, for one test;
    delete() removes the topics."""

    def __init__(self, bootstrap: str, partitions: int = 2) -> None:
        self.bootstrap = bootstrap
        tag = uuid.uuid4().hex[:8]
        self.names = {"call_events": f"t-{tag}-call-outcomes", "dead_letters": f"t-{tag}-dlq",
                      "hangup_rates": f"t-{tag}-rates", "borrower_flags": f"t-{tag}-flags",
                      "hangup_alerts": f"t-{tag}-alerts"}
        self.group = f"t-{tag}-sink"
        admin = self._admin()
        try:
            admin.create_topics([NewTopic(n, partitions, 1) for n in self.names.values()])
        finally:
            admin.close()

    def _admin(self) -> KafkaAdminClient:
        return KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="sink-tests")

    def delete(self) -> None:
        admin = self._admin()
        try:
            admin.delete_topics(list(self.names.values()))
        finally:
            admin.close()

    def producer(self) -> KafkaProducer:
        return KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks="all")

    def send(self, table: str, records: Iterable[Record]) -> int:
        """Produce the records to the table's topic; how many."""
        p = self.producer()
        n = 0
        try:
            for key, value in records:
                p.send(self.names[table], key=key, value=value)
                n += 1
            p.flush(30)
        finally:
            p.close()
        return n

    def send_events(self, events: Iterable[CallOutcome]) -> int:
        return self.send("call_events", event_records(events))

    def send_json(self, table: str, records: Iterable[dict[str, Any]], key: str) -> int:
        return self.send(table, json_records(records, key))

    def group_members(self) -> int:
        """Members of the sink's group once it is stable (0 while rebalancing)."""
        admin = self._admin()
        try:
            g = admin.describe_groups([self.group]).get(self.group, {})
        finally:
            admin.close()
        return len(g.get("members", [])) if g.get("group_state") == "Stable" else 0

    def committed_vs_end(self) -> tuple[dict[str, int], dict[str, int]]:
        """Committed offsets of the sink's group and log-end offsets, summed per topic."""
        admin = self._admin()
        try:
            committed = admin.list_group_offsets(self.group).get(self.group, {})
        finally:
            admin.close()
        c = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            tps = [KafkaTopicPartition(t, p) for t in self.names.values() for p in c.partitions_for_topic(t) or ()]
            ends = c.end_offsets(tps)
        finally:
            c.close()
        com: dict[str, int] = {}
        end: dict[str, int] = {}
        for tp, off in ends.items():
            end[tp.topic] = end.get(tp.topic, 0) + off
            meta = committed.get(tp)
            com[tp.topic] = com.get(tp.topic, 0) + (meta.offset if meta is not None else 0)
        return com, end


def compact_rows_stored(backend: Backend, db: str) -> dict[CompactKey, dict[str, int]]:
    """Every compact rollup row as the readers see it (argMax(..., version) per key), all three
    grains: what testkit.oracles.rollups.compact_counts recounts."""
    out: dict[CompactKey, dict[str, int]] = {}
    keys = ", ".join(COMPACT_KEY)
    latest = ", ".join(f"argMax({c}, version)" for c in COUNTS)
    for grain in ("1m", "1h", "1d"):
        rows = backend.query(f"SELECT toUInt32(bucket_start), {keys}, {latest} FROM "
                             f"{db}.rollup_compact_{grain} GROUP BY bucket_start, {keys}").rows
        for r in rows:
            key: CompactKey = (grain, int(r[0]), str(r[1]), str(r[2]), str(r[3]))
            out[key] = dict(zip(COUNTS, (int(x) for x in r[4:]), strict=True))
    return out
