"""The worker's runtime without Faust: the two stages, which partitions they own, whether the
group is settled, and the bodies of the timers and rebalance handlers. The Faust adapter
(hangwatch.streams.faust_adapter) calls these from its agents, timers and signals; tests call
them directly.

Any unexpected exception in a stage stops the process at once (fail-stop) instead of letting a
batch whose results were not written be acknowledged: the supervisor (systemd, Kubernetes,
docker compose `restart:`) starts it again and the batch is replayed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from hangwatch.platform.settings import Settings
from hangwatch.schemas.topics import CALL_OUTCOMES, RATE_PARTIALS
from hangwatch.streams import metrics
from hangwatch.streams.delivery import DeliveryGuard
from hangwatch.streams.merge_stage import MergeStage
from hangwatch.streams.partition_stage import PartitionStage
from hangwatch.streams.ports import InputRecord
from hangwatch.streams.stage import StageIO
from hangwatch.streams.stuck import Watch

log = logging.getLogger(__name__)
UNSETTLED_WARN_S = 60.0
HOUSEKEEPING_S = 1.0  # window expiry and the borrower sweep, at most this often
EXPIRE_MERGED_S = 30.0
UNSTICK_PARTIALS_S = 2.0
FAIL_STOP_EXIT = 70


def idle_check_interval(idle_close_s: float) -> float:
    """Seconds between idleness checks: a quarter of idle_close_s, within 0.1 .. 1 s."""
    return min(1.0, max(0.1, idle_close_s / 4))


def fail_stop(what: str, exc: BaseException) -> None:
    log.critical("%s failed; stopping the worker so the batch is replayed after restart: %r", what, exc,
                 exc_info=exc)
    logging.shutdown()
    os._exit(FAIL_STOP_EXIT)


class GroupStatus(Protocol):
    def unsettled_reasons(self) -> dict[str, bool]:
        """What keeps the group from being settled (a rebalance, its recovery step); all False: settled."""


Acknowledge = Callable[[list[InputRecord]], object]


class WorkerRuntime:
    """Two stages on one worker: the partition stage on call-outcomes, the merge stage on the
    rate partials. Partitions arrive and leave through `assigned`/`revoked`."""

    def __init__(self, settings: Settings, io: StageIO, status: GroupStatus, watch: Watch) -> None:
        self.settings = settings
        self.status = status
        self.watch = watch
        io = StageIO(io.producer, io.control, io.changelogs, ready=self.settled)
        self.partition = PartitionStage(settings, io)
        self.merge = MergeStage(settings, io)
        self.stages: dict[str, PartitionStage | MergeStage] = {
            settings.kafka.topic(CALL_OUTCOMES): self.partition, settings.kafka.topic(RATE_PARTIALS): self.merge}
        self.idle_check_s = idle_check_interval(settings.worker.idle_close_s)
        self._unsettled_since: float | None = None

    # ---- readiness ---------------------------------------------------------------------------
    def settled(self) -> bool:
        """No rebalance is in progress: the partitions owned are settled, state may be loaded
        and read. The timers wait while unsettled; say so if it lasts."""
        reasons = self.status.unsettled_reasons()
        ok = not any(reasons.values())
        metrics.READY.set(1 if ok else 0)
        now = time.monotonic()
        if ok:
            self._unsettled_since = None
        elif self._unsettled_since is None:
            self._unsettled_since = now
        elif now - self._unsettled_since > UNSETTLED_WARN_S:
            log.warning("not settled for %.0f s (rebalance in progress): %s", now - self._unsettled_since, reasons)
            self._unsettled_since = now
        return ok

    # ---- batches -------------------------------------------------------------------------------
    async def partition_batch(self, records: list[InputRecord], acknowledge: Acknowledge) -> None:
        await self._guarded("partition stage", "partition-stage batch", self.partition.process(records, acknowledge))

    async def merge_batch(self, records: list[InputRecord], acknowledge: Acknowledge) -> None:
        await self._guarded("merge stage", "merge-stage batch", self.merge.process(records, acknowledge))

    async def _guarded(self, what: str, label: str, work: Awaitable[object]) -> None:
        try:
            with self.watch.running(label):
                await work
        except Exception as e:
            fail_stop(what, e)

    # ---- timers ----------------------------------------------------------------------------------
    async def source_positions(self) -> tuple[dict[int, int | None], dict[int, int]]:
        """The partition stage's position and the broker's end offset of every owned source
        partition (one request, shared by the idle check and the delivery watchdog)."""
        stage = self.partition
        async with stage.lock:
            if not stage.ready():  # start() restores state: not while a rebalance runs
                return {}, {}
            partitions = set(stage.owned)
            await stage.start(partitions)
            positions = stage.positions(partitions)
        return positions, await stage.delivery.end_offsets(partitions)

    async def housekeeping(self) -> None:
        """Once a second: idle windows closed, old windows expired, a slice of idle borrowers
        swept, then the delivery watchdog of the source."""
        with self.watch.running("timer housekeeping"):
            try:
                positions, ends = await self.source_positions()
                await self.partition.tick(caught_up(positions, ends), housekeeping=True)
            except Exception as e:
                fail_stop("partition timer", e)
            await watchdog(self.partition.delivery, positions, ends)

    async def close_idle_windows(self) -> None:
        """A few times per idle_close_s: only the idleness check, so the last windows close soon
        after it elapsed. Skips rounds while a batch runs (events are flowing)."""
        if self.partition.lock.locked():
            return
        with self.watch.running("timer close_idle_windows"):
            try:
                positions, ends = await self.source_positions()
                if not self.partition.lock.locked():  # taken at once if free: no batch can slip in
                    await self.partition.tick(caught_up(positions, ends), housekeeping=False)
            except Exception as e:
                fail_stop("partition timer", e)

    async def expire_merged(self) -> None:
        with self.watch.running("timer expire_merged"):
            try:
                await self.merge.tick()
            except Exception as e:
                fail_stop("merge timer", e)

    async def unstick_partials(self) -> None:
        if not self.settled():
            return
        stage = self.merge
        partitions = set(stage.owned)
        with self.watch.running("timer unstick_partials"):
            try:
                ends = await stage.delivery.end_offsets(partitions)
            except Exception as e:  # advisory, as in watchdog
                log.warning("delivery watchdog of %s: %r (retrying)", stage.delivery.topic_name, e)
                return
            await watchdog(stage.delivery, stage.positions(partitions), ends)

    # ---- rebalances -----------------------------------------------------------------------------
    async def revoked(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Stop owning the partitions at once, then drop their cached state under the stages'
        locks (which waits for a batch in flight to finish, so no write for a revoked partition
        happens after this). Their state is rebuilt from the changelogs if they come back."""
        by_stage = self._by_stage(partitions)
        for name, stage in self.stages.items():
            stage.revoke(by_stage[name])
            metrics.ASSIGNED_PARTITIONS.labels(stage.registry_topic).set(len(stage.owned))
        metrics.READY.set(0)
        async with self.partition.lock, self.merge.lock:
            for name, stage in self.stages.items():
                stage.forget(by_stage[name])

    def assigned(self, partitions: Iterable[tuple[str, int]]) -> None:
        for name, ps in self._by_stage(partitions).items():
            stage = self.stages[name]
            stage.assign(ps)
            metrics.ASSIGNED_PARTITIONS.labels(stage.registry_topic).set(len(stage.owned))

    def _by_stage(self, partitions: Iterable[tuple[str, int]]) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {name: set() for name in self.stages}
        for topic, p in partitions:
            if topic in out:
                out[topic].add(p)
        return out


def caught_up(positions: dict[int, int | None], ends: dict[int, int]) -> set[int]:
    """Owned source partitions whose every record up to the broker's end offset has been
    processed (by the stage's own position, hangwatch.streams.core.positions)."""
    return {p for p, pos in positions.items() if pos is not None and p in ends and pos >= ends[p]}


async def watchdog(guard: DeliveryGuard, positions: dict[int, int | None], ends: dict[int, int]) -> None:
    """A partition whose records stopped coming although the broker has more is sought back to
    the stage's position (hangwatch.streams.delivery)."""
    try:
        await guard.unstick(positions, ends)
    except Exception as e:  # advisory: a broker hiccup here must not stop the worker
        log.warning("delivery watchdog of %s: %r (retrying)", guard.topic_name, e)
