"""Faust's Kafka consumer with a per-fetch (not per-message) delivery loop.

faust-streaming's `Consumer._drain_messages` hands every fetched message to the topic
conductor through `Service.wait_first(callback(message), suspend_flow.wait())`: four tasks
and an `asyncio.wait` per message, so that a rebalance (which sets `suspend_flow`) can abandon
a delivery blocked on a full stream buffer. The worker profile showed this loop, not the
pipeline's own code, as the largest single cost (bench/results/profiles/): a stock Faust agent
with no state read ~7,800 events/s here, a plain aiokafka consumer ~90,000.

`BatchDrainConsumer` keeps Faust's semantics but pays that price once per fetch: one task
delivers the whole fetch (same conductor callback, same read-offset and gap bookkeeping, same
commit cadence, a yield to the event loop every 100 messages), raced once against
`suspend_flow`. When a rebalance suspends the flow mid-fetch the delivery task is cancelled
and the rest of the fetch is not delivered and not marked read; unlike the stock loop, which
marked such dropped messages read (streams.delivery explains why the stages keep their own
positions anyway). Everything else (group membership, table recovery, commits, the
conductor, streams, acks) is Faust's own code.

The app uses it through `HangwatchApp`, which only swaps the consumer transport.

Topics registered with `HangwatchApp.batches_of(topic)` skip the per-message path as well:
their messages of one fetch go to the agent as ONE item, a list of Faust `Message`s, on an
in-memory channel (no Event, no stream buffer, no per-message codec or sensor). The agent
acknowledges the messages it processed with `consumer.ack`, so Faust's commit works as for
any agent; topics are still subscribed through the conductor, so the group assignment and the
co-partitioned tables are unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar, cast

import faust
from faust.transport import by_url
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ChannelT, ConsumerT, Message, TopicT, TransportT
from mode import Service, ServiceT

# Same cadence as Faust's loop: let agents run between deliveries of a large fetch.
YIELD_EVERY = 100


class BatchDrainConsumer(faust_aiokafka.Consumer):
    """aiokafka-backed Faust consumer whose drain loop awaits once per fetch."""

    #: topic name -> channel that receives that topic's messages of a fetch as one list
    batch_channels: dict[str, ChannelT]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_channels = {}

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover - runs in the Fetcher
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = cast(AsyncIterator[tuple[TP, Message]], self.getmany(timeout=1.0))
                # As in Faust: getmany may return at once in a loop without yielding.
                await self.sleep(0)
                if not self.should_stop:
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

    async def _deliver(self, fetched: AsyncIterator[tuple[TP, Message]]) -> None:
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
        try:
            async for tp, message in fetched:
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
        finally:
            await cast(Any, fetched).aclose()


class BatchDrainTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with `BatchDrainConsumer` as its consumer."""

    Consumer: ClassVar[type[ConsumerT]] = BatchDrainConsumer


class HangwatchApp(faust.App):
    """faust.App whose consumer transport uses `BatchDrainConsumer` (the producer transport
    and everything else are Faust's defaults)."""

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
