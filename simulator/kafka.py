"""Sending records to Kafka fast, in order, with the exact key and value bytes.

Records are appended to one aiokafka BatchBuilder per partition and each full batch is handed
to the producer without awaiting its delivery (per-message send() costs several times more
per record in Python). Partitions are chosen with aiokafka's default partitioner (murmur2, as
Java clients do), so a borrower's calls land where any other producer would put them; a record
without a key goes round-robin. aiokafka keeps one request in flight per partition, so the
order of records within a partition is the order they were given in."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.codec import has_lz4, lz4_encode
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from hangwatch.platform.settings import KafkaSettings
from hangwatch.simulator.records import SimRecord

try:
    from aiokafka.record import default_records as _py_records
except ImportError:  # pragma: no cover - layout of another aiokafka version
    _py_records = None  # type: ignore[assignment]
try:
    from aiokafka.record._crecords import default_records as _c_records
except ImportError:  # pragma: no cover - aiokafka without its C extensions
    _c_records = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

Compression = Literal["lz4", "none"]


async def paced(records: Iterable[SimRecord], rate: float) -> AsyncIterator[SimRecord]:
    """Yield records at `rate` per second of wall time. The next record is generated only
    when it is due, so a live simulation stamps each call with the time it is sent."""
    it = iter(records)
    start = time.monotonic()
    i = 0
    while True:
        delay = start + i / rate - time.monotonic()
        if delay > 0.001:
            await asyncio.sleep(delay)
        elif i % 256 == 0:
            await asyncio.sleep(0)  # let the producer's background tasks run when not sleeping
        try:
            r = next(it)
        except StopIteration:
            return
        yield r
        i += 1


async def produce(
    records: Iterable[SimRecord] | AsyncIterable[SimRecord],
    kafka: KafkaSettings,
    topic: str,
    *,
    linger_ms: int = 20,
    max_batch_size: int = 512 * 1024,
    compression: Compression = "lz4",
    acks: Literal[0, 1, "all"] = "all",
    on_progress: Callable[[int], None] | None = None,
    metadata_timeout_s: float = 15.0,
    lz4_level: int = 1,
) -> int:
    """Send every record to `topic`; returns how many the broker acknowledged. Raises
    RuntimeError if any batch failed (after aiokafka's retries) or the topic does not exist.
    `on_progress(delivered)` is called as batches are acknowledged. A topic the broker does not
    know within `metadata_timeout_s` is an error (topics are created by `hangwatch topics create`).
    `lz4_level`: see _lz4_level below."""
    if compression == "lz4" and not has_lz4():
        raise RuntimeError("lz4 compression needs the 'cramjam' package (pip install cramjam), or use compression none")
    producer = AIOKafkaProducer(
        **kafka.aiokafka_kwargs(),
        client_id="hangwatch-simulator",
        acks=acks,
        # With acks=all the producer is idempotent: a batch retried after its acknowledgement was
        # lost (a leader broker dying mid-request) is not written twice.
        enable_idempotence=acks == "all",
        linger_ms=linger_ms,
        max_batch_size=max_batch_size,
        compression_type=None if compression == "none" else compression,
    )
    try:
        await producer.start()
    except KafkaError as e:
        await producer.stop()
        raise RuntimeError(f"no Kafka broker answers at {kafka.bootstrap_servers} ({e}); start one with "
                           "`deploy/local/kafka.sh start` or set HANGWATCH_KAFKA__BOOTSTRAP_SERVERS") from e
    try:
        with _lz4_level(lz4_level):
            return await _Sender(producer, topic, linger_ms, on_progress).run(records, metadata_timeout_s)
    finally:
        await producer.stop()


@contextlib.contextmanager
def _lz4_level(level: int) -> Iterator[None]:
    """aiokafka compresses lz4 at level 9 (high compression), which costs ~3.7 us per record,
    as much as generating it; level 1 is ten times faster for ~20 % more bytes, and any lz4
    reader decodes both. aiokafka has no option for it, so its record builders' lz4_encode is
    swapped for the duration (one thread: only batches built meanwhile are affected). If a
    later aiokafka moves the function, nothing is swapped and compression is just slower."""
    modules = [m for m in (_py_records, _c_records) if m is not None and hasattr(m, "lz4_encode")]
    saved = [m.lz4_encode for m in modules]
    fast = functools.partial(lz4_encode, level=level)
    for m in modules:
        m.lz4_encode = fast
    try:
        yield
    finally:
        for m, f in zip(modules, saved, strict=True):
            m.lz4_encode = f


class _Sender:
    def __init__(self, producer: AIOKafkaProducer, topic: str, linger_ms: int,
                 on_progress: Callable[[int], None] | None) -> None:
        self._producer = producer
        self._topic = topic
        self._linger_s = linger_ms / 1000
        self._on_progress = on_progress
        self._batches: dict[int, tuple[Any, float]] = {}  # partition -> (BatchBuilder, opened at)
        # Batches are handed over one at a time: the background flusher and the main loop must
        # never reorder two batches of one partition.
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Future[Any]] = set()
        self._errors: list[BaseException] = []
        self._delivered = 0
        self._partitions: list[int] = []
        self._by_key: dict[bytes, int] = {}  # murmur2 in pure Python is slow; keys (borrowers) repeat
        self._round_robin = 0  # for records without a key
        self._last_partition = 0

    async def run(self, records: Iterable[SimRecord] | AsyncIterable[SimRecord], metadata_timeout_s: float) -> int:
        self._partitions = await self._wait_for_topic(metadata_timeout_s)
        flusher = asyncio.create_task(self._flush_stale())
        try:
            if isinstance(records, AsyncIterable):
                async for r in records:
                    if self._append(r):
                        await self._handover(r)
                    if self._errors:
                        break
            else:
                # A plain loop, no async generator in between: it costs a microsecond a record.
                for i, r in enumerate(records):
                    if self._append(r):
                        await self._handover(r)
                    if i % 4096 == 4095:
                        await asyncio.sleep(0)  # let the sender, the flusher and signal handlers run
                        if self._errors:
                            break
            for p in list(self._batches):
                await self._send(p)
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        if self._pending:
            await asyncio.wait(self._pending)
        if self._errors:
            raise RuntimeError(f"{len(self._errors)} batch(es) were not delivered to {self._topic!r}: "
                               f"{self._errors[0]!r}") from self._errors[0]
        return self._delivered

    async def _wait_for_topic(self, timeout_s: float) -> list[int]:
        """The topic's partitions. Polls the cluster metadata rather than asking for the topic
        (aiokafka would log a warning on every retry), since a topic just created may take a
        moment to have leaders."""
        deadline = time.monotonic() + timeout_s
        while True:
            cluster = await self._producer.client.fetch_all_metadata()
            partitions = cluster.partitions_for_topic(self._topic)
            if partitions:
                await self._producer.partitions_for(self._topic)  # registers the topic with the producer
                return sorted(partitions)
            if time.monotonic() >= deadline:
                raise RuntimeError(f"topic {self._topic!r} does not exist on the broker; create it first "
                                   "(`hangwatch topics create`) or pass another --topic")
            await asyncio.sleep(0.25)

    def _partition(self, key: bytes | None) -> int:
        if key is None:
            self._round_robin += 1
            return self._partitions[self._round_robin % len(self._partitions)]
        p = self._by_key.get(key)
        if p is None:
            p = self._by_key[key] = DefaultPartitioner()(key, self._partitions, self._partitions)
        return p

    def _append(self, r: SimRecord) -> bool:
        """Add r to its partition's open batch; True if that batch is full (r not added)."""
        p = self._last_partition = self._partition(r.key)
        entry = self._batches.get(p)
        if entry is None:
            entry = self._batches[p] = (self._producer.create_batch(), time.monotonic())
        return entry[0].append(key=r.key, value=r.value, timestamp=None) is None

    async def _handover(self, r: SimRecord) -> None:
        """The batch r did not fit in is full: send it and put r in a new one."""
        p = self._last_partition
        await self._send(p)
        batch = self._producer.create_batch()
        self._batches[p] = (batch, time.monotonic())
        batch.append(key=r.key, value=r.value, timestamp=None)  # the first record always fits

    async def _send(self, partition: int) -> None:
        async with self._lock:
            entry = self._batches.pop(partition, None)
            if entry is None:
                return
            batch = entry[0]
            count = batch.record_count()
            fut = await self._producer.send_batch(batch, self._topic, partition=partition)
        self._pending.add(fut)
        fut.add_done_callback(lambda f, c=count: self._done(f, c))

    def _done(self, fut: asyncio.Future[Any], count: int) -> None:
        self._pending.discard(fut)
        if fut.cancelled():
            self._errors.append(asyncio.CancelledError())
        elif fut.exception() is not None:
            exc = fut.exception()
            assert exc is not None
            self._errors.append(exc)
            log.error("a batch of %d records to %s failed: %r", count, self._topic, exc)
        else:
            self._delivered += count
            if self._on_progress is not None:
                self._on_progress(self._delivered)

    async def _flush_stale(self) -> None:
        """Batches only go out when full or when handed over; at a slow (live) rate, hand over
        the ones older than linger_ms so records do not wait for the batch to fill."""
        while True:
            await asyncio.sleep(self._linger_s)
            now = time.monotonic()
            for p, (_, opened) in list(self._batches.items()):
                if now - opened >= self._linger_s:
                    await self._send(p)
