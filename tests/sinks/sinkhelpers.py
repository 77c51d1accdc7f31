"""Helpers for the sink tests: deterministic records, Kafka topics, an in-process sink."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import TopicPartition
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from hangwatch.platform.settings import ClickHouseSettings, Settings, SinkSettings
from hangwatch.schemas.call_outcome import CallOutcome, format_ts
from hangwatch.schemas.records import OUTCOME_COUNT_FIELDS, rate_key
from hangwatch.sinks.backends import Backend
from hangwatch.sinks.tables import DATA_TABLES
from hangwatch.sinks.validate import RowValidator, load_column_types
from hangwatch.sinks.writer import SinkStats, run_sink
from hangwatch.sinks.writer.batch import Batch
from hangwatch.sinks.writer.router import Router

CH_URL = os.environ.get("HANGWATCH_TEST_CLICKHOUSE_URL", "clickhouse://default@127.0.0.1:9000")
KAFKA = os.environ.get("HANGWATCH_TEST_KAFKA", "127.0.0.1:9092")
RUN_TAG = f"hwt_{os.getpid()}_{uuid.uuid4().hex[:6]}"


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



# Two days ago at midnight UTC: recent enough that no table's retention (TTL on current
# ClickHouse) expires the test rows.
BASE_MS = (int(time.time()) // 86400 - 2) * 86400 * 1000
BRANCHES = ("sh-pudong", "bj-haidian", "gz-tianhe")
CAMPAIGNS = ("pre_loan_verification", "post_loan_review", "repayment_reminder")
OUTCOMES = ("completed", "hung_up", "refused", "wrong_party", "declined", "no_answer", "busy", "voicemail",
            "invalid_number")
CONNECTED = ("completed", "hung_up", "refused", "wrong_party")
STAGES = ("greeting", "identity_check", "income_check", "collateral_check", "closing")
GRADES = ("AAA", "AA", "A", "B", "C", "unrated")


def make_event(rng: random.Random, occurred_at_ms: int, i: int) -> CallOutcome:
    channel = rng.choice(("human", "robot"))
    outcome = rng.choice(OUTCOMES)
    return CallOutcome(
        event_id=f"ev-{uuid.UUID(int=rng.getrandbits(128))}",
        call_id=f"call-{i}",
        borrower_id=f"b-{rng.randrange(200):04d}",
        loan_id=f"loan-{rng.randrange(400):04d}",
        occurred_at_ms=occurred_at_ms,
        campaign=rng.choice(CAMPAIGNS),
        channel=channel,
        agent_id=None if channel == "robot" else f"agent-{rng.randrange(6)}",
        branch=rng.choice(BRANCHES),
        outcome=outcome,
        hangup_stage=rng.choice(STAGES) if outcome in ("hung_up", "refused") else None,
        duration_s=round(rng.uniform(0, 300), 1) if outcome in CONNECTED else 0.0,
        attempt_no=rng.choice((None, 1, 2, 3)),
        pre_notified=rng.random() < 0.5,
        credit_grade=rng.choice((*GRADES, None)),
        first_time_borrower=rng.choice((True, False, None)),
        script_version=rng.choice(("v1", "v2", None)),
        extra={"queue": "q1"} if i % 7 == 0 else {},
    )


def make_events(n: int, seed: int, start_ms: int, span_s: int) -> list[CallOutcome]:
    rng = random.Random(seed)
    return [make_event(rng, start_ms + rng.randrange(span_s * 1000), i) for i in range(n)]


def rate_record(size: int, start_s: int, dimension: str, value: str, counts: dict[str, int], version: int,
                *, final: bool = True, source: str = "stream") -> dict[str, Any]:
    c = {f: counts.get(f, 0) for f in OUTCOME_COUNT_FIELDS}
    attempts = sum(c.values())
    connected = c["completed"] + c["hung_up"] + c["refused"] + c["wrong_party"]
    return {
        "key": rate_key(size, start_s, dimension, value), "window_size_s": size,
        "window_start": format_ts(start_s * 1000), "window_end": format_ts((start_s + size) * 1000),
        "dimension": dimension, "value": value, "attempts": attempts, "connected": connected, **c,
        "hangup_rate": c["hung_up"] / connected if connected else None,
        "decline_rate": c["declined"] / attempts if attempts else None,
        "refusal_rate": c["refused"] / connected if connected else None,
        "contact_rate": connected / attempts if attempts else None,
        "version": version, "final": final, "source": source,
        "emitted_at": format_ts((start_s + size + version) * 1000),  # deterministic: a redelivery is identical
    }


def flag_record(i: int, status: str = "raised", severity: str = "medium", base_ms: int = BASE_MS,
                borrower: str | None = None) -> dict[str, Any]:
    ev = [{"event_id": f"e{i}-{k}", "call_id": f"c{i}-{k}", "occurred_at": format_ts(base_ms + k * 60_000),
           "outcome": "refused", "hangup_stage": "income_check", "agent_id": "agent-1", "channel": "human",
           "script_version": "v2"} for k in range(3)]
    return {"flag_id": f"flag-{i}", "borrower_id": borrower or f"b-{i:04d}", "loan_id": f"loan-{i}",
            "rule_id": "repeated_refusal", "rule_version": 1, "severity": severity, "status": status,
            "evidence": ev, "first_event_at": format_ts(base_ms), "last_event_at": format_ts(base_ms + 120_000),
            "explanation": f"borrower b-{i:04d} refused 3 calls within 7 days",
            "emitted_at": format_ts(base_ms + 130_000 + (1000 if status != "raised" else 0))}


def alert_record(i: int, status: str = "firing", base_ms: int = BASE_MS) -> dict[str, Any]:
    return {"alert_id": f"branch|sh-pudong|{base_ms // 1000 + i * 300}", "status": status, "dimension": "branch",
            "value": "sh-pudong", "window_size_s": 300, "window_start": format_ts(base_ms + i * 300_000),
            "window_end": format_ts(base_ms + (i + 1) * 300_000), "connected": 40, "hung_up": 20,
            "hangup_rate": 0.5, "wilson_low": 0.35, "wilson_high": 0.65, "baseline_rate": 0.2,
            "baseline_connected": 500, "explanation": "hang-up rate 50% vs baseline 20%",
            "version": 1 if status == "firing" else 2, "emitted_at": format_ts(base_ms + (i + 1) * 300_000)}


def dlq_record(offset: int, base_ms: int = BASE_MS) -> dict[str, Any]:
    return {"source_topic": "call-outcomes", "source_partition": 0, "source_offset": offset,
            "source_timestamp_ms": base_ms, "key_b64": "Yi0wMDAx", "value_b64": "bm90IGpzb24=",
            "error_kind": "not_json", "error_field": None, "error": "value is not JSON",
            "received_at": format_ts(base_ms + 1000), "worker": "worker@test"}


# --- Kafka -------------------------------------------------------------------------------

class Topics:
    """Uniquely named topics for one test, deleted afterwards."""

    def __init__(self, bootstrap: str, partitions: int = 2) -> None:
        self.bootstrap = bootstrap
        tag = uuid.uuid4().hex[:8]
        self.names = {"call_events": f"t-{tag}-call-outcomes", "dead_letters": f"t-{tag}-dlq",
                      "hangup_rates": f"t-{tag}-rates", "borrower_flags": f"t-{tag}-flags",
                      "hangup_alerts": f"t-{tag}-alerts"}
        self.group = f"t-{tag}-sink"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="sink-tests")
        try:
            admin.create_topics([NewTopic(n, partitions, 1) for n in self.names.values()])
        finally:
            admin.close()

    def delete(self) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="sink-tests")
        try:
            admin.delete_topics(list(self.names.values()))
        finally:
            admin.close()

    def producer(self) -> KafkaProducer:
        return KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks="all")

    def send(self, table: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
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
        return self.send("call_events", ((e.borrower_id.encode(), e.to_json()) for e in events))

    def send_json(self, table: str, records: Iterable[dict[str, Any]], key: str) -> int:
        return self.send(table, ((str(r[key]).encode(), orjson.dumps(r)) for r in records))

    def group_members(self) -> int:
        """Members of the sink's group once it is stable (0 while rebalancing)."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="sink-tests")
        try:
            g = admin.describe_groups([self.group]).get(self.group, {})
        finally:
            admin.close()
        return len(g.get("members", [])) if g.get("group_state") == "Stable" else 0

    def committed_vs_end(self) -> tuple[dict[str, int], dict[str, int]]:
        """Committed offsets of the sink's group and log-end offsets, summed per topic."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="sink-tests")
        try:
            committed = admin.list_group_offsets(self.group).get(self.group, {})
        finally:
            admin.close()
        from kafka import KafkaConsumer

        c = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            from kafka import TopicPartition

            tps = [TopicPartition(t, p) for t in self.names.values() for p in c.partitions_for_topic(t) or ()]
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


def wait_for(predicate: Callable[[], bool], timeout: float = 60, interval: float = 0.25, what: str = "",
             describe: Callable[[], object] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}"
                         + (f" ({describe()})" if describe else ""))


# --- batches without Kafka ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FakeMsg:
    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None


def router_for(store: Store) -> Router:
    types = load_column_types(store.backend, store.db, [t.name for t in DATA_TABLES])
    validators = {t.name: RowValidator(t.columns, types[t.name]) for t in DATA_TABLES}
    return Router({t.name: t.name for t in DATA_TABLES}, validators, "sink@test")


def batch_of(router: Router, records: dict[str, list[tuple[bytes | None, bytes | None]]], now_s: int) -> Batch:
    """A batch as the sink would build it; topic names equal table names, offsets count up."""
    batch = Batch(t.name for t in DATA_TABLES)
    for table, recs in records.items():
        for off, (key, value) in enumerate(recs):
            msg = FakeMsg(table, 0, off, BASE_MS, key, value)
            router.add(batch, TopicPartition(table, 0), msg, now_s)
    return batch


def event_records(events: Iterable[CallOutcome]) -> list[tuple[bytes | None, bytes | None]]:
    return [(e.borrower_id.encode(), e.to_json()) for e in events]


def json_records(records: Iterable[dict[str, Any]], key: str) -> list[tuple[bytes | None, bytes | None]]:
    return [(str(r[key]).encode(), orjson.dumps(r)) for r in records]
