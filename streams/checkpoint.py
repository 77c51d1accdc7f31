"""The commit order of one batch, in one place.

A stage fills a Checkpoint while it processes a batch (or a timer round) and then commits it.
The order is what makes a crash at any point harmless:

1. outputs: DLQ records, borrower flags, rate partial snapshots, rate updates, alerts. Every
   one is idempotent downstream (deterministic ids, snapshots, versions), so a replay that
   sends them again changes nothing.
2. state: the changelog records of everything the batch changed (window cells, seen event ids,
   borrower states, merged cells, spike states).
3. local stores: the borrower states reach RocksDB only after their changelog records were
   delivered, together with the changelog offset they bring the store to, so the local store
   is always a prefix of its changelog.
4. positions: the records that say how far the state goes (a partition's watermark and next
   offset, a merge partition's next offset) and the watermark broadcast to the merge stage.
   Restored state never claims work whose state or outputs are missing.
5. acknowledgement of the input records the batch processed; the consumer commits offsets only
   of acknowledged records. A crash before this replays the batch, which the positions in step 4
   (or their absence) turn into skips or exact reprocessing (hangwatch.streams.core.positions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from hangwatch.streams.outbox import Outbox
from hangwatch.streams.ports import BatchProducer, InputRecord


class LocalStore(Protocol):
    """A local copy of a changelog, written only after its records were delivered."""

    def stage_writes(self, state: Outbox) -> Any:
        """Queue the changelog records of the held writes into `state`; returns the writes."""

    def write_delivered(self, writes: Any, state: Outbox) -> None:
        """Write `writes` locally, with the changelog offsets `state` delivered them at."""

    def release(self, writes: Any) -> None:
        """The writes are done with (written, or dropped after a failure)."""


class Checkpoint:
    def __init__(self, producer: BatchProducer, stores: Sequence[LocalStore] = ()) -> None:
        self.outputs = Outbox(producer)
        self.state = Outbox(producer)
        self.positions = Outbox(producer)
        self.stores = tuple(stores)
        self.processed: list[InputRecord] = []

    async def commit(self, acknowledge: Callable[[list[InputRecord]], object] | None = None) -> None:
        """Deliver everything in the order above; then acknowledge the processed records."""
        await self.outputs.flush()
        held = [s.stage_writes(self.state) for s in self.stores]
        try:
            await self.state.flush()
            for store, writes in zip(self.stores, held, strict=True):
                store.write_delivered(writes, self.state)
        finally:
            for store, writes in zip(self.stores, held, strict=True):
                store.release(writes)
        await self.positions.flush()
        if acknowledge is not None and self.processed:
            acknowledge(self.processed)
