"""The sink's consume -> buffer -> flush -> commit loop (aiokafka).

Guarantees, and how:
- Nothing lost: offsets are committed manually and only for messages whose rows ClickHouse
  has accepted (or that were dead-lettered / skipped as invalid). A crash at any point
  re-reads from the last commit.
- Nothing doubled: the re-read rows are inserted again into tables that deduplicate
  (ReplacingMergeTree keyed by event_id / window key / flag / alert / source position) and
  every query reads them exactly (FINAL or argMax).
- ClickHouse down: the batch is kept, every partition is paused, and the flush is retried
  with exponential backoff. getmany() keeps being called (it returns nothing while paused)
  so the consumer stays in its group however long the outage lasts.
- Rebalance: before partitions are given up the batch is flushed and committed; if that is
  not possible in time it is dropped, and the partitions' next owner re-reads it.
- Backend calls block (clickhouse-driver, chdb), so they run on one dedicated thread; the
  event loop keeps heartbeating meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from hangwatch.platform.settings import Settings
from hangwatch.sinks.backends import BackendError
from hangwatch.sinks.tables import DATA_TABLES
from hangwatch.sinks.writer import metrics
from hangwatch.sinks.writer.batch import Batch
from hangwatch.sinks.writer.flush import Flusher, FlushReport
from hangwatch.sinks.writer.router import Router

log = logging.getLogger("hangwatch.sink")
T = TypeVar("T")
COMMIT_TIMEOUT_S = 30.0


@dataclasses.dataclass(slots=True)
class SinkStats:
    """Totals since start (for the progress line, tests and the CLI's exit summary)."""

    rows: Counter[str] = dataclasses.field(default_factory=Counter)
    rejected: Counter[str] = dataclasses.field(default_factory=Counter)
    flushes: int = 0
    retries: int = 0
    commits: int = 0
    dropped_on_revoke: int = 0


class SinkLoop:
    def __init__(self, settings: Settings, router: Router, flusher: Flusher, stop: asyncio.Event) -> None:
        self.cfg = settings.sink
        self.kafka = settings.kafka
        self.router = router
        self.flusher = flusher
        self.stop = stop
        # kafka.topic_prefix applies to every registry topic, the sink's included
        self.topics = [self.kafka.topic(t) for t in self.cfg.topics.values()]
        self.batch = Batch(t.name for t in DATA_TABLES)
        self.pending_commit: dict[TopicPartition, int] = {}
        self.stats = SinkStats()
        self.paused = False
        self._lock = asyncio.Lock()  # one flush+commit at a time (main loop or rebalance)
        self._store = ThreadPoolExecutor(1, thread_name_prefix="hangwatch-sink-store")
        self._consumer: AIOKafkaConsumer | None = None
        # monotonic times of the last poll that returned records and of the last flush
        self._last_data_at = 0.0
        self._last_flush_at = 0.0

    # -- public --------------------------------------------------------------------------
    async def run(self) -> SinkStats:
        consumer = await self._start_consumer()
        if consumer is None:
            return self.stats
        self._consumer = consumer
        try:
            await self._consume(consumer)
            # Stopping: one last flush attempt; what cannot be stored now is re-read next start.
            await self._flush_until_stored(consumer)
            await self._commit(consumer)
        finally:
            await consumer.stop()
            self._store.shutdown(wait=True)
        return self.stats

    # -- consuming -----------------------------------------------------------------------
    async def _start_consumer(self) -> AIOKafkaConsumer | None:
        backoff = self.cfg.initial_retry_backoff_s
        while not self.stop.is_set():
            consumer = AIOKafkaConsumer(
                group_id=self.cfg.group_id, client_id=f"hangwatch-{self.flusher.worker}",
                enable_auto_commit=False, auto_offset_reset=self.cfg.auto_offset_reset,
                # A transactional producer's aborted records must never be stored.
                isolation_level="read_committed",
                session_timeout_ms=int(self.cfg.session_timeout_s * 1000),
                heartbeat_interval_ms=max(100, int(self.cfg.session_timeout_s * 1000 / 3)),
                max_poll_records=self.cfg.batch_rows, **self.kafka.aiokafka_kwargs())
            consumer.subscribe(self.topics, listener=_Listener(self))
            try:
                await consumer.start()
            except KafkaError as e:
                log.warning("Kafka at %s not reachable (%s); retrying in %.1f s",
                            self.kafka.bootstrap_servers, e, backoff)
                await consumer.stop()
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.cfg.max_retry_backoff_s)
                continue
            log.info("consuming %s as group %s", ", ".join(self.topics), self.cfg.group_id)
            return consumer
        return None

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        last_log, logged = time.monotonic(), Counter(self.stats.rows)
        while not self.stop.is_set():
            await self._poll(consumer, self._poll_timeout())
            if self._flush_due():
                await self._flush_until_stored(consumer)
            elif self.pending_commit:  # a commit failed earlier (Kafka restarting): try again
                await self._commit(consumer)
            if self.cfg.log_interval_s and time.monotonic() - last_log >= self.cfg.log_interval_s:
                self._log_progress(time.monotonic() - last_log, logged)
                last_log, logged = time.monotonic(), Counter(self.stats.rows)

    async def _poll(self, consumer: AIOKafkaConsumer, timeout_s: float) -> None:
        try:
            data = await consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=self.cfg.batch_rows)
        except KafkaError as e:
            log.warning("Kafka fetch failed (%s); retrying", e)
            await self._sleep(min(1.0, timeout_s) or 0.1)
            return
        if not data:
            return
        self._last_data_at = time.monotonic()
        now_s = int(time.time())
        assigned = consumer.assignment()
        for tp, msgs in data.items():
            if tp not in assigned:  # revoked while these were in flight; the new owner reads them
                continue
            for m in msgs:
                self.router.add(self.batch, tp, m, now_s)
        metrics.BUFFERED_ROWS.set(self.batch.rows)

    def _poll_timeout(self) -> float:
        # Short enough to notice a stop request quickly and to flush on time (by age, or when
        # the input went quiet).
        if self.batch.is_empty():
            return min(self.cfg.flush_interval_s, 0.5)
        wait = min(self.cfg.flush_interval_s - self.batch.age(), 0.5)
        if self.cfg.idle_flush_s:
            wait = min(wait, self.cfg.idle_flush_s)
        return max(0.0, wait)

    def _flush_due(self) -> bool:
        """A flush when a table has batch_rows rows, the oldest row waited flush_interval_s, or
        the input has been quiet for idle_flush_s (the end of a burst or a backlog: nothing more
        is coming soon, so waiting out the interval would only delay the rows) and the last
        flush is min_flush_gap_s ago. Under a steady stream the input is never quiet that long
        and flushes stay one per interval; a sparse one gets at most one per min_flush_gap_s."""
        if self.batch.is_empty():
            return False
        if self.batch.largest >= self.cfg.batch_rows or self.batch.age() >= self.cfg.flush_interval_s:
            return True
        now = time.monotonic()
        return bool(self.cfg.idle_flush_s) and now - self._last_data_at >= self.cfg.idle_flush_s \
            and now - self._last_flush_at >= self.cfg.min_flush_gap_s

    # -- flushing ------------------------------------------------------------------------
    async def _flush_until_stored(self, consumer: AIOKafkaConsumer) -> None:
        backoff = self.cfg.initial_retry_backoff_s
        down_since: float | None = None
        attempt = 0
        while not self.batch.is_empty():
            attempt += 1
            async with self._lock:
                error = await self._flush_once()
                if error is None:
                    await self._commit(consumer)
            if error is None:
                if self.paused:
                    consumer.resume(*consumer.assignment())
                    self.paused = False
                    metrics.PAUSED.set(0)
                    log.warning("ClickHouse is back after %.1f s; stored the held batch, consumption resumed",
                                time.monotonic() - (down_since or time.monotonic()))
                return
            self.stats.retries += 1
            metrics.RETRIES.inc()
            if down_since is None:
                down_since = time.monotonic()
            if not self.paused:
                consumer.pause(*consumer.assignment())
                self.paused = True
                metrics.PAUSED.set(1)
                log.error("ClickHouse unavailable: %s. Consumption paused; holding %d rows (not committed); "
                          "retrying with backoff up to %.0f s", error, self.batch.rows, self.cfg.max_retry_backoff_s)
            else:
                log.warning("ClickHouse still unavailable after %.1f s (attempt %d, next in %.1f s): %s",
                            time.monotonic() - down_since, attempt, backoff, error)
            if self.stop.is_set():
                log.warning("stopping with %d rows not stored; they are read again from the committed offsets "
                            "at the next start", self.batch.rows)
                return
            await self._idle(consumer, backoff)
            backoff = min(backoff * 2, self.cfg.max_retry_backoff_s)
        if self.paused:
            # A rebalance dropped the held batch (its partitions' owners re-read it). Resume;
            # if ClickHouse is still down the next flush pauses again.
            consumer.resume(*consumer.assignment())
            self.paused = False
            metrics.PAUSED.set(0)
            log.warning("held batch handed back to Kafka in a rebalance; consumption resumed")

    async def _flush_once(self, timeout_s: float | None = None) -> BackendError | TimeoutError | None:
        """Store the current batch. Caller holds the lock. Returns the error, or None when stored
        (the batch's offsets then wait in pending_commit)."""
        snap = self.batch.take()
        self._last_flush_at = time.monotonic()
        try:
            fut = self._in_store(self.flusher.flush, snap)
            report: FlushReport = await (asyncio.wait_for(fut, timeout_s) if timeout_s else fut)
        except (BackendError, TimeoutError) as e:
            self.batch = snap.merged_with(self.batch)
            return e
        self.pending_commit.update(snap.offsets)
        self.stats.flushes += 1
        for t in report.tables:
            self.stats.rows[t.table] += t.rows - t.rejected
            self.stats.rejected[t.table] += t.rejected
        metrics.BUFFERED_ROWS.set(self.batch.rows)
        log.debug("flushed %d rows in %.3f s", report.rows, report.seconds)
        return None

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        if not self.pending_commit:
            return
        assigned = consumer.assignment()
        # Offsets of partitions we no longer own cannot be committed by us; the new owner
        # re-reads those rows, which the tables deduplicate.
        offsets = {tp: o for tp, o in self.pending_commit.items() if tp in assigned}
        if not offsets:
            self.pending_commit.clear()
            return
        try:
            await asyncio.wait_for(consumer.commit(offsets), COMMIT_TIMEOUT_S)
        except (CommitFailedError, IllegalStateError) as e:
            log.warning("offset commit refused after a rebalance (%s); the stored rows will be re-read and "
                        "deduplicated", e)
            self.pending_commit.clear()
            return
        except (KafkaError, TimeoutError) as e:
            log.warning("offset commit failed (%s); rows are stored, will commit again", e)
            return
        for tp, o in offsets.items():
            if self.pending_commit.get(tp) == o:
                del self.pending_commit[tp]
        self.pending_commit = {tp: o for tp, o in self.pending_commit.items() if tp in assigned}
        self.stats.commits += 1
        metrics.COMMITS.inc()

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:
            if not self.batch.is_empty():
                n = self.batch.rows
                error = await self._flush_once(timeout_s=self.cfg.revoke_flush_timeout_s)
                if error is not None:
                    self.batch.take()  # dropped: the next owner of each partition re-reads it
                    self.stats.dropped_on_revoke += n
                    log.warning("rebalance: could not store %d buffered rows (%s); dropped them, they are read "
                                "again from the last committed offsets", n, error)
            if self._consumer is not None:
                await self._commit(self._consumer)
            self.pending_commit.clear()

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.paused and self._consumer is not None and assigned:
            # Still waiting for ClickHouse: new partitions stay paused too.
            self._consumer.pause(*assigned)

    # -- helpers -------------------------------------------------------------------------
    async def _idle(self, consumer: AIOKafkaConsumer, seconds: float) -> None:
        """Wait, while calling getmany so that the group does not consider us dead."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
            await self._poll(consumer, min(left, 0.5))

    async def _sleep(self, seconds: float) -> None:
        # Timing out is the normal case (slept the full time); a stop request ends it early.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    def _in_store(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._store, fn, *args)

    def _log_progress(self, seconds: float, before: Counter[str]) -> None:
        delta = self.stats.rows - before
        total = sum(delta.values())
        per_table = ", ".join(f"{t} {n}" for t, n in sorted(delta.items())) or "nothing"
        # Idle and healthy: keep the log quiet (DEBUG); anything happening is INFO.
        level = logging.INFO if total or self.batch.rows or self.paused else logging.DEBUG
        log.log(level,
                "stored %d rows in %.0f s (%.0f/s): %s; buffered %d; rejected %d; invalid events %d; retries %d%s",
                 total, seconds, total / seconds if seconds else 0, per_table, self.batch.rows,
                 sum(self.stats.rejected.values()), sum(self.router.invalid_events.values()), self.stats.retries,
                 "; PAUSED (ClickHouse unavailable)" if self.paused else "")


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: SinkLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.loop.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.loop.on_assigned(assigned)
