"""hangwatch.streams.faust_adapter.BatchDrainConsumer: one fetch delivered per batch, in order,
in order, read offsets move only once a batch is handed over, and no false gaps are recorded
(a gap marks offsets as acknowledged, so one inside a batch would let Faust commit offsets
nobody processed). The consumer is Faust's own object, not started; the fetch is a list. The
path against the real broker is covered by tests/integration."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types import TP, Message

from hangwatch.streams.faust_adapter import BatchDrainConsumer, HangwatchApp

SOURCE = "t.call-outcomes"
OTHER = "t.other"


def _message(topic: str, partition: int, offset: int) -> Message:
    return Message(topic, partition, offset, timestamp=0.0, timestamp_type=0, headers=[], key=b"k", value=b"v",
                   checksum=None, tp=TP(topic, partition))


def _fetch(messages: list[Message]) -> list[tuple[TP, Message]]:
    return [(m.tp, m) for m in messages]


class RecordingChannel:
    def __init__(self, block: asyncio.Event | None = None) -> None:
        self.items: list[list[Message]] = []
        self.block = block

    async def put(self, value: Any) -> None:
        if self.block is not None:
            await self.block.wait()
        self.items.append(value)


def _consumer() -> tuple[BatchDrainConsumer, list[Message], list[tuple[TP, int, int]]]:
    app = HangwatchApp("test-transport", broker="kafka://127.0.0.1:1")
    consumer = app.consumer
    assert isinstance(consumer, BatchDrainConsumer)
    delivered: list[Message] = []
    gaps: list[tuple[TP, int, int]] = []

    async def callback(message: Message) -> None:
        delivered.append(message)

    async def add_gap(tp: TP, start: int, end: int) -> None:
        gaps.append((tp, start, end))

    consumer.callback = callback
    consumer._add_gap = add_gap  # type: ignore[method-assign,assignment]
    consumer._commit_every = None
    app.topics.acks_enabled_for = lambda topic: True  # type: ignore[method-assign]
    return consumer, delivered, gaps


def test_batched_topic_arrives_as_one_list_per_fetch_without_gaps() -> None:
    consumer, delivered, gaps = _consumer()
    channel = RecordingChannel()
    consumer.batch_channels[SOURCE] = channel  # type: ignore[assignment]
    for p in (0, 1):  # the previous fetch ended at 99
        consumer._read_offset[TP(SOURCE, p)] = 99
    fetch = [_message(SOURCE, p, o) for o in range(100, 350) for p in (0, 1)] + [_message(OTHER, 0, 7)]
    asyncio.run(consumer._deliver(_fetch(fetch)))

    assert len(channel.items) == 1
    batch = channel.items[0]
    assert [(m.partition, m.offset) for m in batch] == [(m.partition, m.offset) for m in fetch if m.topic == SOURCE]
    assert [(m.topic, m.offset) for m in delivered] == [(OTHER, 7)]  # the rest: the conductor, one by one
    assert gaps == []
    assert consumer._read_offset[TP(SOURCE, 0)] == 349
    assert consumer._read_offset[TP(SOURCE, 1)] == 349


def test_a_real_gap_is_still_recorded_once() -> None:
    consumer, _, gaps = _consumer()
    consumer.batch_channels[SOURCE] = RecordingChannel()  # type: ignore[assignment]
    consumer._read_offset[TP(SOURCE, 0)] = 9
    asyncio.run(consumer._deliver(_fetch([_message(SOURCE, 0, o) for o in (10, 11, 15, 16)])))
    assert gaps == [(TP(SOURCE, 0), 12, 15)]


def test_already_read_offsets_are_not_delivered_again() -> None:
    consumer, _, _ = _consumer()
    channel = RecordingChannel()
    consumer.batch_channels[SOURCE] = channel  # type: ignore[assignment]
    consumer._read_offset[TP(SOURCE, 0)] = 5
    asyncio.run(consumer._deliver(_fetch([_message(SOURCE, 0, o) for o in range(3, 8)])))
    assert [m.offset for m in channel.items[0]] == [5, 6, 7]


def test_a_cancelled_hand_over_leaves_the_batch_unread() -> None:
    """A rebalance cancels the delivery while the agent still holds the previous fetch: the
    fetch was not handed over, so its offsets must not count as read."""
    consumer, _, _ = _consumer()
    consumer.batch_channels[SOURCE] = RecordingChannel(block=asyncio.Event())  # type: ignore[assignment]

    async def run() -> None:
        task = asyncio.ensure_future(consumer._deliver(_fetch([_message(SOURCE, 0, o) for o in range(5)])))
        await asyncio.sleep(0.01)
        task.cancel()
        await task  # ends quietly: a CancelledError out of it would end Faust's drain loop

    asyncio.run(run())
    assert consumer._read_offset[TP(SOURCE, 0)] is None


def test_a_queue_cleared_at_a_rebalance_ends_the_delivery_quietly() -> None:
    """Faust clears the agents' queues at a rebalance and cancels a put that waits on a full
    one. That must end this delivery (the fetch stays unread), not raise: a CancelledError
    out of the delivery task ends Faust's drain loop, and the worker stops fetching for good."""
    consumer, _, _ = _consumer()
    app = consumer.app
    app.flow_control.resume()  # Faust keeps agent queues suspended until the first assignment
    queue = app.FlowControlQueue(maxsize=1, clear_on_resume=True)
    queue.put_nowait([_message(SOURCE, 0, 0)])  # the agent still holds the previous fetch

    class QueueChannel:
        async def put(self, value: Any) -> None:
            await queue.put(value)

    consumer.batch_channels[SOURCE] = QueueChannel()  # type: ignore[assignment]

    async def run() -> None:
        task = asyncio.ensure_future(consumer._deliver(_fetch([_message(SOURCE, 0, o) for o in range(1, 5)])))
        await asyncio.sleep(0.01)
        assert not task.done()  # waiting for room in the queue
        app.flow_control.clear()  # what Faust's on_partitions_revoked does
        await asyncio.wait_for(task, 1.0)  # ends without an exception

    asyncio.run(run())
    assert consumer._read_offset[TP(SOURCE, 0)] is None


def test_ack_all_keeps_fausts_ack_bookkeeping() -> None:
    """The batch ack leaves the consumer exactly as Faust's per-message ack does: committed
    offsets respected, duplicates and already-acked messages skipped, topics without acks."""
    def scenario() -> list[Message]:
        return [_message(SOURCE, 0, o) for o in (5, 6, 6, 7, 3)] + [_message(SOURCE, 1, 0), _message(OTHER, 0, 9)]

    results = []
    for batch in (True, False):
        consumer, _, _ = _consumer()
        consumer.app.topics.acks_enabled_for = lambda topic: topic == SOURCE  # type: ignore[method-assign]
        consumer._committed_offset[TP(SOURCE, 0)] = 4  # offset 3 is below the commit
        msgs = scenario()
        msgs[0].acked = True  # acknowledged before
        n = consumer.ack_all(msgs) if batch else sum(consumer.ack(m) for m in msgs)
        results.append((n, consumer._n_acked, {tp: sorted(v) for tp, v in consumer._acked.items()},
                        {tp: sorted(v) for tp, v in consumer._acked_index.items()}, [m.acked for m in msgs]))
    assert results[0] == results[1]
    assert results[0][0] == 3  # 6, 7 of partition 0 and 0 of partition 1


def test_a_broken_output_producer_is_replaced_before_the_next_send(monkeypatch: Any) -> None:
    """aiokafka's idempotent producer never delivers again after an out-of-order sequence number
    (after a broker restart): every later batch fails the same way, or
    its sender task ends. The worker's output producer replaces it before the next send instead
    of failing every retry of the checkpoint forever."""
    from types import SimpleNamespace

    from aiokafka.errors import OutOfOrderSequenceNumber, RequestTimedOutError

    from hangwatch.platform.settings import Settings
    from hangwatch.streams import faust_adapter

    made: list[Any] = []

    class FakeProducer:
        def __init__(self, **options: Any) -> None:
            self._sender = SimpleNamespace(sender_task=None)
            self.sent: list[str] = []
            self.fail_with: BaseException | None = None
            self.stopped = False
            made.append(self)

        async def start(self) -> None:
            self._sender.sender_task = asyncio.get_running_loop().create_future()

        async def stop(self) -> None:
            self.stopped = True

        async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
            if self._sender.sender_task.done():
                raise OutOfOrderSequenceNumber()
            self.sent.append(topic)
            fut = asyncio.get_running_loop().create_future()
            if self.fail_with is not None:
                fut.set_exception(self.fail_with)
            else:
                fut.set_result(SimpleNamespace(offset=0))
            return fut

    monkeypatch.setattr(faust_adapter, "AIOKafkaProducer", FakeProducer)

    async def send(out: faust_adapter.OutputProducer) -> BaseException | None:
        sent = await out.send_batch(object(), "t", partition=0)
        (result,) = await asyncio.gather(sent, return_exceptions=True)
        await asyncio.sleep(0)  # the failure callback runs
        return result if isinstance(result, BaseException) else None

    async def scenario() -> None:
        out = faust_adapter.OutputProducer(Settings())
        await out.on_start()
        assert await send(out) is None
        made[0].fail_with = RequestTimedOutError()  # retriable: the producer is kept
        assert isinstance(await send(out), RequestTimedOutError) and len(made) == 1
        made[0].fail_with = OutOfOrderSequenceNumber()
        assert isinstance(await send(out), OutOfOrderSequenceNumber)
        assert await send(out) is None, "the retry goes through a new producer"
        assert len(made) == 2 and made[0].stopped and made[1].sent == ["t"] and out.replaced == 1

        made[1]._sender.sender_task.set_exception(OutOfOrderSequenceNumber())  # its sender ends
        assert out.sender_dead()
        assert await send(out) is None and len(made) == 3 and out.replaced == 2 and not out.sender_dead()

    asyncio.run(scenario())
