"""Wires the stages into Faust agents and timers, and runs a worker process.

The agents only take batches and hand them to the stages; all numbers are decided in
streams.core. Any unexpected exception in a stage stops the process at once (fail-stop)
instead of letting Faust acknowledge a batch whose results were not written: the supervisor
(systemd, Kubernetes, docker compose `restart:`) starts it again and the batch is replayed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
from pathlib import Path
from typing import IO, Any, cast

import faust
from faust.types import TP

from hangwatch.platform import gc_policy, native
from hangwatch.platform.settings import Settings
from hangwatch.schemas.topics import CALL_OUTCOMES, RATE_PARTIALS
from hangwatch.streams import metrics
from hangwatch.streams.app import Pipeline, create_pipeline
from hangwatch.streams.changelogs import ensure_changelogs
from hangwatch.streams.delivery import DeliveryGuard
from hangwatch.streams.faust_transport import BatchDrainConsumer
from hangwatch.streams.merge_stage import MergeStage
from hangwatch.streams.partition_stage import PartitionStage
from hangwatch.streams.stuck import StuckReporter

log = logging.getLogger(__name__)
UNSETTLED_WARN_S = 60.0
STUCK_CHECK_S = 15.0
STUCK_AFTER_S = 60.0
HOUSEKEEPING_S = 1.0  # window expiry and the borrower sweep, at most this often


def idle_check_interval(idle_close_s: float) -> float:
    """Seconds between idleness checks: a quarter of idle_close_s, within 0.1 .. 1 s."""
    return min(1.0, max(0.1, idle_close_s / 4))


def _fail_stop(stage: str, exc: BaseException) -> None:
    log.critical("%s stage failed; stopping the worker so the batch is replayed after restart: %r", stage, exc,
                 exc_info=exc)
    logging.shutdown()
    os._exit(70)


def build(settings: Settings) -> tuple[Pipeline, PartitionStage, MergeStage]:
    ensure_changelogs(settings.kafka, settings.worker.app_id)
    pipe = create_pipeline(settings)
    app = pipe.app
    stage1 = PartitionStage(pipe)
    stage2 = MergeStage(pipe)

    consumer = cast(BatchDrainConsumer, app.consumer)  # HangwatchApp's (pipe.*_batches need it)
    ack_all = consumer.ack_all
    watch = consumer.watch

    # Each item is one fetch of the topic's messages (streams.faust_transport). Only messages
    # a stage processed and persisted are acknowledged, so only their offsets can ever be
    # committed.
    @app.agent(pipe.source_batches, name="partition-stage")
    async def partition_agent(fetches: Any) -> None:
        async for messages in fetches:
            try:
                with watch.running("partition-stage batch"):
                    done = await stage1.process(messages)
                ack_all(done)
            except Exception as e:
                _fail_stop("partition", e)

    @app.agent(pipe.partials_batches, name="merge-stage")
    async def merge_agent(fetches: Any) -> None:
        async for messages in fetches:
            try:
                with watch.running("merge-stage batch"):
                    done = await stage2.process(messages)
                ack_all(done)
            except Exception as e:
                _fail_stop("merge", e)

    # Partitions this worker owns, maintained from the rebalance signals: a revoked partition
    # leaves the set before its revocation completes, so a batch buffered before the rebalance
    # cannot write state for it afterwards. The stages read these very sets (under their locks).
    owned: dict[str, set[int]] = {CALL_OUTCOMES: stage1.owned, RATE_PARTIALS: stage2.owned}

    def assigned(registry_name: str) -> set[int]:
        return set(owned[registry_name])

    async def source_positions() -> tuple[dict[int, int | None], dict[int, int]]:
        """The partition stage's position and the broker's end offset of every owned source
        partition (one request, shared by the idle check and the delivery watchdog)."""
        async with stage1.lock:
            if not stage1.ready():  # start() restores state: not while a rebalance runs
                return {}, {}
            partitions = assigned(CALL_OUTCOMES)
            await stage1.start(partitions)
            positions = stage1.positions(partitions)
        return positions, await stage1.delivery.end_offsets(partitions)

    def caught_up(positions: dict[int, int | None], ends: dict[int, int]) -> set[int]:
        """Owned source partitions whose every record up to the broker's end offset has been
        processed (by the stage's own position, streams.core.positions)."""
        return {p for p, pos in positions.items() if pos is not None and p in ends and pos >= ends[p]}

    unsettled_since: list[float] = []  # monotonic time the worker stopped being settled

    def settled() -> bool:
        """No rebalance is in progress (Faust's, its recovery step included): the partitions
        owned are settled, state may be loaded and read."""
        recovery: Any = app.tables.recovery  # type: ignore[attr-defined]  # TableManager, not in TableManagerT
        flags = {"recovery_completed": recovery.completed.is_set(), "rebalancing": bool(app.rebalancing),
                 "in_recovery": bool(recovery.in_recovery)}
        ok = flags["recovery_completed"] and not flags["rebalancing"] and not flags["in_recovery"]
        # The timers (idle close, delivery watchdog) wait while unsettled; say so if it lasts.
        metrics.READY.set(1 if ok else 0)
        now = time.monotonic()
        if ok:
            unsettled_since.clear()
        elif not unsettled_since:
            unsettled_since.append(now)
        elif now - unsettled_since[0] > UNSETTLED_WARN_S:
            log.warning("not settled for %.0f s (rebalance in progress): %s",
                        now - unsettled_since[0], flags)
            unsettled_since[0] = now
        return ok

    # A batch that arrives while a rebalance runs is not processed (nor acknowledged): the
    # consumer is sought to the committed offsets after it.
    stage1.ready = stage2.ready = settled

    # Wall-clock work of the partition stage, in two timers. Once a second (as Faust's timers
    # measure it, a round may take up to that long without an overlap warning): idle windows
    # closed, old windows expired, a slice of idle borrowers swept, the delivery watchdog.
    # In between, a few times per idle_close_s, only the idleness check, so the last windows
    # close within ~1/4 of idle_close_s after it elapsed; it skips rounds while a batch runs
    # (events are flowing; the next round or the housekeeping looks again).
    @app.timer(interval=HOUSEKEEPING_S)
    async def housekeeping() -> None:
        # Waits for a rebalance to settle inside (source_positions, tick): a stage must not
        # load state for partitions that are moving.
        with watch.running("timer housekeeping"):
            try:
                positions, ends = await source_positions()
                await stage1.tick(caught_up(positions, ends), housekeeping=True)
            except Exception as e:
                _fail_stop("partition timer", e)
            await watchdog(stage1.delivery, positions, ends)

    idle_check_s = idle_check_interval(settings.worker.idle_close_s)
    if idle_check_s < HOUSEKEEPING_S:
        @app.timer(interval=idle_check_s)
        async def close_idle_windows() -> None:
            if stage1.lock.locked():
                return
            with watch.running("timer close_idle_windows"):
                try:
                    positions, ends = await source_positions()
                    if not stage1.lock.locked():  # taken at once if free: no batch can slip in
                        await stage1.tick(caught_up(positions, ends), housekeeping=False)
                except Exception as e:
                    _fail_stop("partition timer", e)

    @app.timer(interval=30.0)
    async def expire_merged() -> None:
        with watch.running("timer expire_merged"):
            try:
                await stage2.tick()
            except Exception as e:
                _fail_stop("merge timer", e)

    async def watchdog(guard: DeliveryGuard, positions: dict[int, int | None], ends: dict[int, int]) -> None:
        # A partition whose records stopped coming although the broker has more is sought
        # back to the stage's position (streams.delivery).
        try:
            await guard.unstick(positions, ends)
        except Exception as e:  # advisory: a broker hiccup here must not stop the worker
            log.warning("delivery watchdog of %s: %r (retrying)", guard.topic_name, e)

    @app.timer(interval=2.0)
    async def unstick_partials() -> None:
        if not settled():
            return
        partitions = assigned(RATE_PARTIALS)
        with watch.running("timer unstick_partials"):
            try:
                ends = await stage2.delivery.end_offsets(partitions)
            except Exception as e:  # advisory, as in watchdog
                log.warning("delivery watchdog of %s: %r (retrying)", stage2.delivery.topic_name, e)
                return
            await watchdog(stage2.delivery, stage2.positions(partitions), ends)

    # A batch, timer run or fetch delivery that takes minutes waits on something that will not
    # come; its stack in the log says what (the worker keeps running; this only reports).
    app.add_dependency(StuckReporter(watch, every_s=STUCK_CHECK_S, older_than_s=STUCK_AFTER_S))

    @app.on_partitions_revoked.connect
    async def on_revoked(app_: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        revoked: set[TP] = args[0] if args else kwargs["revoked"]
        log.info("revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))
        # Drop cached state of partitions that move away; it is rebuilt from the changelog
        # (streams.changelog_restore) if they come back. Taking the locks waits for a batch
        # in flight to finish, so no write for a revoked partition happens after this.
        for name in owned:  # in place: the stages hold these sets
            owned[name] -= {tp.partition for tp in revoked if tp.topic == settings.kafka.topic(name)}
            metrics.ASSIGNED_PARTITIONS.labels(name).set(len(owned[name]))
        metrics.READY.set(0)
        async with stage1.lock, stage2.lock:
            stage1.forget(tp.partition for tp in revoked if tp.topic == settings.kafka.topic(CALL_OUTCOMES))
            stage2.forget(tp.partition for tp in revoked if tp.topic == settings.kafka.topic(RATE_PARTIALS))

    @app.on_partitions_assigned.connect
    async def on_assigned(app_: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        assigned: set[TP] = args[0] if args else kwargs["assigned"]
        for name in owned:
            owned[name] |= {tp.partition for tp in assigned if tp.topic == settings.kafka.topic(name)}
            metrics.ASSIGNED_PARTITIONS.labels(name).set(len(owned[name]))
        log.info("assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))

    return pipe, stage1, stage2


class DataDirInUse(RuntimeError):
    pass


def lock_data_dir(path: Path) -> IO[bytes]:
    """Hold an exclusive lock on the worker's data directory for the life of the process.

    Two workers on one data directory would open the same RocksDB files: Faust then retries
    the RocksDB lock for 30 s per partition at every rebalance and gives up."""
    path.mkdir(parents=True, exist_ok=True)
    f = open(path / "worker.lock", "wb")  # noqa: SIM115  (kept open: the lock lives with it)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise DataDirInUse(f"data directory {path} is used by another worker on this machine; give each worker "
                           "its own (--data-dir or HANGWATCH_WORKER__DATA_DIR)") from None
    return f


def run_worker(settings: Settings, loglevel: str = "warn") -> None:
    """Run one worker process until SIGTERM/SIGINT (blocking)."""
    lock = lock_data_dir(settings.worker.data_dir)  # noqa: F841  (held until the process exits)
    log.info("stream core: %s", native.verify_core().mode)  # raises on a stale compiled build
    gc_policy.configure(settings.worker.gc_young_threshold)
    pipe, _, _ = build(settings)
    worker = faust.Worker(pipe.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None  # the terminal spinner redraws on every event loop tick and costs CPU
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr="127.0.0.1")
    sys.argv = sys.argv[:1]
    worker.execute_from_commandline()
