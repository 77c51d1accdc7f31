"""What both stages share: per-partition state of one input topic, ownership, the lock that
keeps batches, timers and rebalances apart, and the delivery bookkeeping of each batch.

A stage holds one state per input partition it owns (PartitionRates in the partition stage,
MergeRates in the merge stage; both carry a streams.core.positions.Position). The worker
runtime (hangwatch.streams.runtime) tells it which partitions it owns and whether the group is
settled; the stage loads a partition's state from its changelog the first time it needs it, and
drops it when the partition is revoked.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from hangwatch.streams.checkpoint import Checkpoint, LocalStore
from hangwatch.streams.core.positions import Delivery, Position
from hangwatch.streams.delivery import DeliveryGuard
from hangwatch.streams.ports import BatchProducer, ChangelogSource, ConsumerControl, InputRecord

log = logging.getLogger(__name__)


class PositionedState(Protocol):
    position: Position

    def accept(self, offset: int) -> Delivery: ...


S = TypeVar("S", bound=PositionedState)


@dataclass(frozen=True)
class StageIO:
    """The outside world of a stage (hangwatch.streams.ports); the Faust adapter builds it."""

    producer: BatchProducer
    control: ConsumerControl
    changelogs: ChangelogSource
    ready: Callable[[], bool] = lambda: True  # the group is settled: state may be loaded and used


@dataclass
class Admitted:
    """A batch sorted by the partitions' positions: what to process, where the delivery left a
    gap (partition -> the offset to seek back to), and how many records were skipped and why."""

    todo: list[InputRecord] = field(default_factory=list)
    gaps: dict[int, int] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)


class Stage(Generic[S]):
    """Base of the partition and merge stages. Subclasses restore a partition's state
    (`_restore`), drop their extra per-partition data (`_drop`), and process batches."""

    name: str = "stage"
    registry_topic: str = ""  # the input topic's registry name (metrics label)

    def __init__(self, io: StageIO, input_topic: str) -> None:
        self.io = io
        self.input_topic = input_topic
        self.states: dict[int, S] = {}
        self.lock = asyncio.Lock()
        self.owned: set[int] = set()
        self.delivery = DeliveryGuard(io.control, input_topic)

    # ---- ownership (the runtime calls these at rebalances) ----------------------------------
    def assign(self, partitions: Iterable[int]) -> None:
        self.owned |= set(partitions)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Stop owning at once: a batch that waits for the lock must not write state for them.
        `forget` (under the lock) drops their state afterwards."""
        self.owned -= set(partitions)

    def ready(self) -> bool:
        return self.io.ready()

    # ---- per-partition state ----------------------------------------------------------------
    def state_for(self, p: int) -> S:
        """The state of a partition `load` restored."""
        st = self.states.get(p)
        if st is None:
            raise RuntimeError(f"{self.name} partition {p}: state used before it was loaded")
        return st

    async def load(self, partitions: Iterable[int]) -> None:
        """Restore the state of partitions not loaded yet from their changelog partitions."""
        new = sorted(set(partitions) - set(self.states))
        if new:
            self.states.update(await self._restore(new))

    async def start(self, partitions: Iterable[int]) -> None:
        """Load partitions' state; give those without a persisted position their start offset."""
        partitions = set(partitions)
        await self.load(partitions)
        await self.delivery.start({p: self.states[p].position for p in partitions})

    def positions(self, partitions: Iterable[int]) -> dict[int, int | None]:
        """Next offset to process per partition (None: not loaded or not started yet)."""
        return {p: st.position.next_offset if (st := self.states.get(p)) else None for p in partitions}

    def forget(self, partitions: Iterable[int]) -> None:
        partitions = list(partitions)
        for p in partitions:
            self.states.pop(p, None)
        self._drop(partitions)
        self.delivery.forget(partitions)

    async def _restore(self, partitions: list[int]) -> dict[int, S]:
        raise NotImplementedError

    def _drop(self, partitions: list[int]) -> None:
        """Drop what the subclass keeps per partition besides its state."""

    # ---- a batch ----------------------------------------------------------------------------
    def checkpoint(self, stores: Sequence[LocalStore] = ()) -> Checkpoint:
        return Checkpoint(self.io.producer, stores)

    async def admit(self, records: Sequence[InputRecord], cp: Checkpoint) -> Admitted:
        """Load the batch's partitions and sort its records by their partitions' positions.

        Records of partitions this worker no longer owns (buffered before a rebalance) are
        skipped and NOT acknowledged: their new owner replays them from the committed offset.
        Replays of persisted work are acknowledged without processing; records after a gap are
        neither (the caller seeks back)."""
        owned = set(self.owned)
        await self.start({r.partition for r in records} & owned)
        out = Admitted()
        for r in records:
            p = r.partition
            if p not in owned:
                out.skipped["not_owned"] += 1
                continue
            st = self.state_for(p)
            delivery = st.accept(r.offset)
            if delivery == "gap":
                out.gaps.setdefault(p, st.position.next_offset)  # type: ignore[arg-type]
                out.skipped["gap"] += 1
                continue
            cp.processed.append(r)
            if delivery == "replay":
                out.skipped["replay_skipped"] += 1
                continue
            out.todo.append(r)
        return out

    async def settle_delivery(self, cp: Checkpoint, admitted: Admitted) -> None:
        """After the commit: note the partitions that progressed, seek back over gaps."""
        self.delivery.arrived({r.partition for r in cp.processed})
        await self.delivery.seek_back(admitted.gaps)
