"""The one module that imports Faust: the app, its consumer transport, the ports the stages
use (hangwatch.streams.ports), and the agents, timers and rebalance signals that drive the
Faust-free runtime (hangwatch.streams.runtime).

Why a custom consumer transport. faust-streaming's `Consumer._drain_messages` hands every
fetched message to the topic conductor through `Service.wait_first(callback(message),
suspend_flow.wait())`: four tasks and an `asyncio.wait` per message, so that a rebalance (which
sets `suspend_flow`) can abandon a delivery blocked on a full stream buffer. The worker profile
showed this loop, not the pipeline's own code, as the largest single cost
(bench/results/profiles/): a stock Faust agent with no state read ~7,800 events/s here, a plain
aiokafka consumer ~90,000.

`BatchDrainConsumer` keeps Faust's semantics but pays that price once per fetch: one task
delivers the whole fetch (same conductor callback, same read-offset and gap bookkeeping, same
commit cadence, a yield to the event loop every 100 messages), raced once against
`suspend_flow`. When a rebalance suspends the flow mid-fetch the delivery task is cancelled
and the rest of the fetch is not delivered and not marked read; unlike the stock loop, which
marked such dropped messages read (hangwatch.streams.delivery explains why the stages keep
their own positions anyway). Everything else (group membership, commits, the conductor, acks)
is Faust's own code. It overrides Faust internals (`_drain_messages`, the consumer thread's
`_create_worker_consumer`, `App._new_transport`), which is why faust-streaming is pinned below
0.16: tests/streams/test_faust_adapter.py runs it on the installed version.

Topics registered with `HangwatchApp.batches_of(topic)` skip the per-message path as well:
their messages of one fetch go to the agent as ONE item, a list of Faust `Message`s, on an
in-memory channel (no Event, no stream buffer, no per-message codec or sensor). The runtime
acknowledges the messages a checkpoint committed with `BatchDrainConsumer.ack_all`, so Faust's
commit works as for any agent.

Outputs, changelogs and positions go through the worker's own AIOKafkaProducer
(`OutputProducer`, started and stopped with the app), not Faust's producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any, ClassVar, cast

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.errors import IllegalStateError, OutOfOrderSequenceNumber, ProducerFenced, UnknownProducerId
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport import by_url
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ChannelT, ConsumerT, Message, TopicT, TransportT
from faust.types.tuples import ack_lock
from mode import Service, ServiceT
from mode.utils.futures import notify

from hangwatch.platform.logs import limit_repeats
from hangwatch.platform.settings import Settings
from hangwatch.schemas.topics import CALL_OUTCOMES, RATE_PARTIALS, topic
from hangwatch.streams.changelog_restore import KafkaChangelogSource
from hangwatch.streams.ports import InputRecord
from hangwatch.streams.runtime import EXPIRE_MERGED_S, HOUSEKEEPING_S, UNSTICK_PARTIALS_S, WorkerRuntime
from hangwatch.streams.stage import StageIO
from hangwatch.streams.stuck import Watch

log = logging.getLogger(__name__)
# Batch failures after which an idempotent producer never delivers again (OutputProducer)
PRODUCER_BROKEN = (OutOfOrderSequenceNumber, UnknownProducerId, ProducerFenced)
# Same cadence as Faust's loop: let agents run between deliveries of a large fetch.
YIELD_EVERY = 100
# How long the watchdog waits for the consumer's position of a partition that has none yet.
POSITION_WAIT_S = 1.0


class LingeringConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with the broker asked to hold each fetch until it has
    `fetch_min_bytes` or `fetch_linger_ms` passed (Faust sends min 1 byte, so at a low rate
    every fetch carries a handful of records and each batch pays its broker round trips and
    per-batch work for them). Under load fetches fill at once; the linger bounds the delay."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        owner = cast("BatchDrainConsumer", self.consumer)
        # AIOKafkaConsumer keeps its constructor arguments and hands them to its Fetcher at start()
        consumer._fetch_min_bytes = owner.fetch_min_bytes
        consumer._fetch_max_wait_ms = owner.fetch_linger_ms
        return consumer


class BatchDrainConsumer(faust_aiokafka.Consumer):
    """aiokafka-backed Faust consumer whose drain loop awaits once per fetch."""

    #: the broker answers a fetch once it has this many bytes or this many ms passed
    fetch_min_bytes: int = 1
    fetch_linger_ms: int = 1500  # Faust's own fetch_max_wait_ms

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return LingeringConsumerThread(self, loop=self.loop, beacon=self.beacon)

    #: topic name -> channel that receives that topic's messages of a fetch as one list
    batch_channels: dict[str, ChannelT]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_channels = {}
        self.watch = Watch()  # fetch deliveries; the worker adds its batches and timers and reports it

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:  # type: ignore[override]
        """Faust's `Consumer.getmany` with its per-record work done once per partition of a
        fetch: the highwater lookup and monitor update (each an aiokafka assignment check; ~4 %
        of the worker's time done per message), and the generation and flow checks. Per
        record they guard Faust's own drain loop, which awaits between records; here the fetch
        is unpacked with no await in between, so neither can change within it. Records come
        partition by partition (Faust round-robins them); each partition's order is kept."""
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            self.log.dev("getmany called while flow not active. Seek back to committed offsets.")
            try:
                await self.perform_seek()
            except Exception as ex:
                self.log.warning(f"exception performing seek when flow not active {ex}")
            return
        to_message = self._to_message
        buffered = self._buffered_partitions
        track = self.app.monitor.track_tp_end_offset
        for tp, tp_records in records.items():
            if self.app.consumer_generation_id != generation_id or not self.flow_active:
                break
            if active_partitions is None or tp in active_partitions or tp in buffered:
                track(tp, self.highwater(tp))
                for record in tp_records:
                    yield tp, to_message(tp, record)

    def ack_all(self, messages: Iterable[Message]) -> int:
        """`Consumer.ack` for each message, under one `ack_lock` and with Faust's lookups done
        once for the batch: the same bookkeeping (`_acked`, `_acked_index`, `_n_acked`, which
        Faust's commit reads). Returns how many were newly acknowledged."""
        n = 0
        with ack_lock:
            acks_enabled_for = self.app.topics.acks_enabled_for
            committed_offsets = self._committed_offset
            acked_index = self._acked_index
            acked = self._acked
            unacked = self._unacked_messages
            try:
                for message in messages:
                    if message.acked:
                        continue
                    message.acked = True
                    if not acks_enabled_for(message.topic):
                        continue
                    tp, offset = message.tp, message.offset
                    committed = committed_offsets[tp]
                    if committed is None or offset >= committed:
                        index = acked_index[tp]
                        if offset not in index:
                            unacked.discard(message)
                            index.add(offset)
                            acked[tp].append(offset)
                            n += 1
            finally:
                self._n_acked += n
                notify(self._waiting_for_ack)
        return n

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover - runs in the Fetcher
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                # The fetch itself is awaited here, outside the delivery task, as Faust's loop
                # does: cancelling a getmany that waits on the consumer thread at a rebalance
                # would lose the records that call still returns there (the thread's position
                # moves past them, possibly past a seek that recovery just made).
                fetched = [pair async for pair in cast(AsyncIterator[tuple[TP, Message]],
                                                        self.getmany(timeout=1.0))]
                # As in Faust: getmany may return at once in a loop without yielding.
                await self.sleep(0)
                if fetched and not self.should_stop:
                    delivery = asyncio.ensure_future(self._deliver(fetched))
                    # wait_first cancels the delivery if the flow is suspended (rebalance)
                    # or the service stops; an exception in it propagates from here.
                    await self.wait_first(delivery, self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, fetched: list[tuple[TP, Message]]) -> None:
        """Deliver one fetch in order, with Faust's per-message bookkeeping (read offsets,
        gap tracking for acks, commit every N acks): messages of batch topics as one list per
        topic after the fetch, the others one by one to the conductor."""
        callback = self.callback
        batch_channels = self.batch_channels
        batches: dict[str, list[Message]] = {}
        # read offsets of batched messages, applied once the batch is handed over
        batched_up_to: dict[TP, int] = {}
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        since_yield = 0
        with self.watch.running("consumer: delivering a fetch"):
            try:
                for tp, message in fetched:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    r_offset = batched_up_to[tp] if tp in batched_up_to else read_offset[tp]
                    if r_offset is not None and offset < r_offset:
                        continue  # already delivered (Faust drops these the same way)
                    if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if tp.topic in batch_channels:
                        batches.setdefault(tp.topic, []).append(message)
                        batched_up_to[tp] = offset
                        continue
                    await callback(message)
                    read_offset[tp] = offset
                for name, messages in batches.items():
                    # blocks while the agent still holds an earlier fetch: the consumer's own
                    # prefetch buffer keeps filling, so the next fetch is a bigger batch
                    await batch_channels[name].put(cast(Any, messages))
                    for tp, offset in batched_up_to.items():  # read once handed over (a cancelled
                        if tp.topic == name:  # put leaves them unread)
                            read_offset[tp] = offset
            except asyncio.CancelledError:
                # At a rebalance Faust clears the agents' queues and cancels their waiting putters
                # (mode's ThrowableQueue.clear); wait_first also cancels this task when the flow is
                # suspended. Either way the rest of this fetch was not handed over and stays unread.
                # Letting the CancelledError out would end the drain loop for good (wait_first
                # re-raises a task's exception) and the worker would stop fetching.
                return


class BatchDrainTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with `BatchDrainConsumer` as its consumer."""

    Consumer: ClassVar[type[ConsumerT]] = BatchDrainConsumer


class HangwatchApp(faust.App):
    """faust.App whose consumer transport uses `BatchDrainConsumer` (the producer transport
    and everything else are Faust's defaults)."""

    def linger_fetches(self, min_bytes: int, linger_ms: int) -> None:
        """Ask the broker to hold fetches until `min_bytes` or `linger_ms` (before start)."""
        consumer = self.consumer
        if isinstance(consumer, BatchDrainConsumer):
            consumer.fetch_min_bytes = min_bytes
            consumer.fetch_linger_ms = linger_ms

    def batches_of(self, source: TopicT, maxsize: int = 1) -> ChannelT:
        """A channel that receives `source`'s messages as one list per fetch; use it as an
        agent's channel. `source` is subscribed (group assignment, acks, commits) as if an
        agent read it. maxsize: fetches buffered ahead of the agent."""
        consumer = self.consumer
        if not isinstance(consumer, BatchDrainConsumer):
            raise TypeError(f"batched delivery needs the aiokafka transport, not {type(consumer).__name__}")
        channel = self.channel(maxsize=maxsize)
        self.topics.add(source)
        for name in source.topics:
            consumer.batch_channels[name] = channel
        return channel

    def _new_transport(self) -> TransportT:
        url = self.conf.broker_consumer[0]
        if by_url(url) is not faust_aiokafka.Transport:
            return super()._new_transport()  # another driver: keep Faust's own loop
        return BatchDrainTransport(self.conf.broker_consumer, self)


# ---- the app -----------------------------------------------------------------------------------
def _credentials(s: Settings) -> Any:
    k = s.kafka
    if k.security_protocol.startswith("SASL"):
        ctx = k.aiokafka_kwargs().get("ssl_context")
        return SASLCredentials(
            username=k.sasl_username,
            password=k.sasl_password.get_secret_value() if k.sasl_password else None,
            mechanism=k.sasl_mechanism or "PLAIN",
            ssl_context=ctx,
        )
    if k.security_protocol == "SSL":
        return SSLCredentials(k.aiokafka_kwargs()["ssl_context"])
    return None


def create_app(s: Settings) -> HangwatchApp:
    """The Faust app: group membership, the consumer and its commits. No Faust tables: the
    stages write their state to changelog topics the worker creates (hangwatch.streams.changelogs)
    and restore it from them (hangwatch.streams.changelog_restore, hangwatch.streams.borrower_store)."""
    w = s.worker
    brokers = ";".join(f"kafka://{h.strip()}" for h in s.kafka.bootstrap_servers.split(","))
    w.data_dir.mkdir(parents=True, exist_ok=True)
    app = HangwatchApp(
        w.app_id,
        broker=brokers,
        broker_credentials=_credentials(s),
        store="memory://",
        datadir=str(w.data_dir),
        topic_partitions=topic(CALL_OUTCOMES).partitions,
        # Topics come from the registry (`hangwatch topics create`), the changelogs from
        # hangwatch.streams.changelogs: Faust declares nothing. Its leader-election topic is
        # off (no on_leader timers here); declaring it asked only the first broker of the
        # metadata, so a worker started while a dead broker was still listed exited.
        topic_allow_declare=False,
        topic_disable_leader=True,
        topic_replication_factor=s.kafka.replication_factor,
        web_enabled=w.web_enabled,
        web_port=w.web_port,
        web_host="127.0.0.1",
        broker_session_timeout=w.broker_session_timeout_s,
        consumer_group_instance_id=w.instance_id,  # static membership when set (docs/operations.md)
        broker_heartbeat_interval=w.broker_heartbeat_interval_s,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=w.batch_max,
        # per partition and fetch; Faust's 1 MB (~2,000 events) would cut batches short of batch_max
        consumer_max_fetch_size=4 * 1024 * 1024,
        stream_buffer_maxsize=max(4096, w.batch_max * 2),
        # Offsets are committed by Faust's commit loop only for acked records; the runtime
        # acks a batch after its checkpoint committed.
        broker_commit_interval=1.0,
        # Records of a revoked partition that were buffered but not processed are never
        # acknowledged (hangwatch.streams.stage); do not wait for them at rebalance.
        stream_wait_empty=False,
        worker_redirect_stdouts=False,
    )
    app.linger_fetches(w.fetch_min_bytes, w.fetch_linger_ms)
    return app


# ---- the ports ---------------------------------------------------------------------------------
class FaustConsumerControl:
    """hangwatch.streams.ports.ConsumerControl on Faust's consumer."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def earliest_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        got = await self.app.consumer.earliest_offsets(*(TP(topic, p) for p in partitions))
        return {tp.partition: int(o) for tp, o in got.items() if o is not None}

    async def end_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        got = await self.app.consumer.highwaters(*(TP(topic, p) for p in partitions))
        return {tp.partition: int(o) for tp, o in got.items() if o is not None}

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        # In Faust's consumer thread, where aiokafka runs: Faust's consumer.seek() changes the
        # fetcher from this thread, racing that thread's fetch (a KeyError in aiokafka's
        # fetched_records crashed workers on a loaded machine).
        consumer = cast(Any, self.app.consumer)
        tp = TP(topic, partition)
        await consumer._thread.call_thread(_seek_in_thread, consumer._thread, tp, offset)
        consumer._read_offset[tp] = offset or None

    async def handed_out(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        # aiokafka's position moves as records are handed to Faust, not as they are fetched
        consumer = cast(Any, self.app.consumer)
        tps = [TP(topic, p) for p in partitions]
        return cast("dict[int, int]", await consumer._thread.call_thread(_positions_in_thread, consumer._thread, tps))


async def _seek_in_thread(thread: Any, tp: TP, offset: int) -> None:
    thread._ensure_consumer().seek(tp, offset)


async def _positions_in_thread(thread: Any, tps: list[TP]) -> dict[int, int]:
    consumer = thread._ensure_consumer()
    held = consumer.assignment()
    out = {}
    for tp in tps:
        if tp in held:
            with contextlib.suppress(asyncio.TimeoutError, IllegalStateError):  # no position yet / taken away
                out[tp.partition] = int(await asyncio.wait_for(consumer.position(tp), POSITION_WAIT_S))
    return out


class OutputProducer(Service):
    """The worker's AIOKafkaProducer as a hangwatch.streams.ports.BatchProducer, started and
    stopped with the app (aiokafka creates it inside the running event loop). Every record
    waits for all in-sync replicas (acks=all), and the producer is idempotent: a batch retried
    after a lost acknowledgement is not written twice (the records are idempotent downstream
    anyway; this keeps the topics free of the duplicates).

    An idempotent aiokafka producer is broken for good once the broker answers a batch with an
    out-of-order sequence number (or an unknown producer id), as after a broker restart that left
    the broker's last sequence of a partition behind the producer's: it keeps its sequence
    numbers, so every later batch to that partition fails the same way (or its sender task ends
    and every send raises). The worker then retried the same checkpoint forever (the soak's
    broker restarts, under load). So the next send after such a failure first replaces the
    producer (a new producer id, sequences from 0); the checkpoint's retry then goes through, and
    what is sent twice is idempotent downstream."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.options = {"acks": "all", "enable_idempotence": True, "linger_ms": 5, "max_batch_size": 256 * 1024,
                        "client_id": f"{settings.worker.app_id}-outputs", **settings.kafka.aiokafka_kwargs()}
        self._producer: AIOKafkaProducer | None = None
        self._broken: tuple[AIOKafkaProducer, BaseException] | None = None  # a producer and what broke it
        self.replaced = 0  # producers replaced because they were broken

    async def on_start(self) -> None:
        self._producer = AIOKafkaProducer(**self.options)
        await self._producer.start()

    def sender_dead(self) -> bool:
        """The producer's sender task ended (aiokafka keeps it private: read defensively)."""
        task = getattr(getattr(self._producer, "_sender", None), "sender_task", None)
        return task is not None and task.done()

    def _watch(self, producer: AIOKafkaProducer, sent: asyncio.Future[Any]) -> None:
        """Note a batch failure that leaves `producer` broken for good."""
        def done(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and isinstance(e := f.exception(), PRODUCER_BROKEN) and self._broken is None:
                self._broken = (producer, e)
        sent.add_done_callback(done)

    async def _replace_broken(self) -> None:
        old = self._producer
        broken, self._broken = self._broken, None
        if broken is not None and broken[0] is not old:
            return  # a late failure of a producer replaced already
        log.warning("the output producer is broken (%r); replacing it",
                    broken[1] if broken else "its sender stopped")
        self._producer = AIOKafkaProducer(**self.options)
        await self._producer.start()
        self.replaced += 1
        if old is not None:
            try:
                await asyncio.wait_for(old.stop(), timeout=10)
            except Exception as e:  # broken already: only its connections are left to close
                log.warning("stopping the broken output producer: %r", e)

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the output producer is used before the app started")
        return self._producer

    async def partitions_for(self, topic: str) -> set[int]:
        return cast(set[int], await self.producer.partitions_for(topic))

    def create_batch(self) -> Any:
        return self.producer.create_batch()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        if self._broken is not None or self.sender_dead():
            await self._replace_broken()
        producer = self.producer
        sent = cast(asyncio.Future[Any], await producer.send_batch(batch, topic, partition=partition))
        self._watch(producer, sent)
        return sent


class FaustGroupStatus:
    """hangwatch.streams.runtime.GroupStatus from Faust's app: rebalancing, or its recovery step."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    def unsettled_reasons(self) -> dict[str, bool]:
        recovery: Any = self.app.tables.recovery  # type: ignore[attr-defined]  # TableManager, not in TableManagerT
        return {"recovery_pending": not recovery.completed.is_set(), "rebalancing": bool(self.app.rebalancing),
                "in_recovery": bool(recovery.in_recovery)}


class StuckReporter(Service):
    """Reports `watch` every `every_s` from the moment the app starts: a Faust timer would
    only start after Faust's first rebalance (its recovery step included), which is one of the
    things that can hang."""

    def __init__(self, watch: Watch, every_s: float, older_than_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.watch = watch
        self.every_s = every_s
        self.older_than_s = older_than_s

    @Service.task
    async def _report(self) -> None:
        while not self.should_stop:
            await self.sleep(self.every_s)
            self.watch.report(self.older_than_s)


# ---- the worker ----------------------------------------------------------------------------------
STUCK_CHECK_S = 15.0
STUCK_AFTER_S = 60.0


class FaustWorkerHost:
    """Builds the app and the runtime, and connects them: one agent per stage on batched
    channels, the runtime's timers, the rebalance signals."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.consumer = cast(BatchDrainConsumer, self.app.consumer)
        self.outputs = OutputProducer(settings)
        io = StageIO(producer=self.outputs, control=FaustConsumerControl(self.app),
                     changelogs=KafkaChangelogSource(settings.kafka))
        self.runtime = WorkerRuntime(settings, io, FaustGroupStatus(self.app), self.consumer.watch)
        self.app.add_dependency(self.outputs)
        # A batch, timer run or fetch delivery that takes minutes waits on something that will not
        # come; its stack in the log says what (the worker keeps running; this only reports).
        self.app.add_dependency(StuckReporter(self.consumer.watch, every_s=STUCK_CHECK_S,
                                              older_than_s=STUCK_AFTER_S))
        self._wire()

    def _wire(self) -> None:
        app, rt, name = self.app, self.runtime, self.settings.kafka.topic
        raw: Any = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        source = app.topic(name(CALL_OUTCOMES), **raw)
        partials = app.topic(name(RATE_PARTIALS), partitions=topic(RATE_PARTIALS).partitions, **raw)
        app.agent(app.batches_of(source), name="partition-stage")(self._partition_agent)
        app.agent(app.batches_of(partials), name="merge-stage")(self._merge_agent)
        app.timer(interval=HOUSEKEEPING_S)(rt.housekeeping)
        if rt.idle_check_s < HOUSEKEEPING_S:
            app.timer(interval=rt.idle_check_s)(rt.close_idle_windows)
        app.timer(interval=EXPIRE_MERGED_S)(rt.expire_merged)
        app.timer(interval=UNSTICK_PARTIALS_S)(rt.unstick_partials)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)

    # Each item is one fetch of the topic's messages. Only records a checkpoint committed are
    # acknowledged, so only their offsets can ever be committed.
    async def _partition_agent(self, fetches: Any) -> None:
        async for messages in fetches:
            await self.runtime.partition_batch(messages, self._acknowledge)

    async def _merge_agent(self, fetches: Any) -> None:
        async for messages in fetches:
            await self.runtime.merge_batch(messages, self._acknowledge)

    def _acknowledge(self, records: list[InputRecord]) -> None:
        self.consumer.ack_all(cast(list[Message], records))

    async def _on_revoked(self, sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        revoked: set[TP] = args[0] if args else kwargs["revoked"]
        log.info("revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))
        await self.runtime.revoked((tp.topic, tp.partition) for tp in revoked)

    async def _on_assigned(self, sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        assigned: set[TP] = args[0] if args else kwargs["assigned"]
        self.runtime.assigned((tp.topic, tp.partition) for tp in assigned)
        log.info("assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class HangwatchWorker(faust.Worker):
    """Faust's worker process, with repeated log lines limited on the handlers it configures
    (a broker outage would otherwise write thousands of client-library lines a minute)."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        limit_repeats(logger)
