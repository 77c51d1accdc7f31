"""Stage 1, per source partition of call-outcomes: decode, dead-letter, count, flag.

The agent gets one fetch of messages at a time (streams.faust_transport) and acknowledges
them only after this module's `process` returned, so the batch's outputs and state are on the
broker before its offsets can be committed. Order inside a batch:
1. DLQ records, borrower flags and rate partial snapshots are sent and their delivery awaited;
2. state (window cells, seen ids, borrower states) is written to the tables' changelogs;
3. the watermark is written last, and broadcast to the merge stage.
A crash anywhere in between replays the batch; the offsets and ids in the state make the
replay harmless (streams.core.partition_rates, streams.core.flags). The watermark record also
holds the next offset to process, which decides what a delivered record is: a replay of
persisted work (skipped), the next record, or one after a gap the consumer left (seek back;
streams.core.positions).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from faust.types import Message

from hangwatch.schemas.call_outcome import ContractError, decode
from hangwatch.schemas.topics import CALL_OUTCOMES, RATE_PARTIALS, topic
from hangwatch.streams import dead_letters, metrics
from hangwatch.streams.app import Pipeline
from hangwatch.streams.borrower_store import BorrowerStore, KeyScan
from hangwatch.streams.changelog_restore import stage_partitions
from hangwatch.streams.core.flags import BorrowerState, apply_events, sweep, too_late
from hangwatch.streams.core.merge_rates import encode_partials, encode_watermark
from hangwatch.streams.core.partition_rates import MIN_TIME, PartitionRates
from hangwatch.streams.core.rules_config import RuleSet, load_rules
from hangwatch.streams.delivery import DeliveryGuard
from hangwatch.streams.outbox import Outbox
from hangwatch.streams.table_io import ChangelogWriter

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


class PartitionStage:
    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        w = pipe.settings.worker
        self.sizes = w.window_sizes_s
        self.grace_ms = w.grace_s * 1000
        self.rules: RuleSet = load_rules(w.rules_file, w.timezone)
        self.n_partials = topic(RATE_PARTIALS).partitions
        self.states: dict[int, PartitionRates] = {}
        self.delivery = DeliveryGuard(pipe.app, pipe.settings.kafka.topic(CALL_OUTCOMES))
        self.lock = asyncio.Lock()
        # Partitions this worker owns (the worker updates the set in place at rebalances) and
        # whether state may be read now (tables recovered, no rebalance running).
        self.owned: set[int] = set()
        self.ready: Callable[[], bool] = lambda: True
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self.rates_io = ChangelogWriter(pipe.rates_changelog)
        self.rates_changelog: str = pipe.rates_changelog.get_topic_name()
        self.borrowers_io = BorrowerStore(pipe.settings.kafka, pipe.borrowers_changelog, w)
        # borrower sweep: the pass over a partition's keys under way, and when the next starts
        self._sweeps: dict[int, KeyScan] = {}
        self._sweep_due: dict[int, float] = {}

    # ---- state per partition -------------------------------------------------------------
    def state_for(self, p: int) -> PartitionRates:
        """The state of a partition `load` restored."""
        st = self.states.get(p)
        if st is None:
            raise RuntimeError(f"partition {p}: state used before it was loaded")
        return st

    async def load(self, partitions: Iterable[int]) -> None:
        """Restore the state of partitions not loaded yet from their changelog partitions
        (streams.changelog_restore): window state in memory, borrower states into their local
        store (streams.borrower_store)."""
        new = sorted(set(partitions) - set(self.states))
        if not new:
            return
        # both changelogs of every new partition at once: one consumer each, side by side
        _, rates = await asyncio.gather(self.borrowers_io.load(new),
                                        stage_partitions(self.pipe.settings.kafka, self.rates_changelog, new))
        for p in new:
            st = self.states[p] = PartitionRates.restore(p, self.sizes, self.grace_ms, rates[p])
            log.info("partition %d: restored %d window cells, %d seen ids, watermark %s, next offset %s", p,
                     len(st.cells), len(st.seen), st.watermark_ms, st.position.next_offset)

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
            self._sweeps.pop(p, None)
            self._sweep_due.pop(p, None)
        self.borrowers_io.forget(partitions)
        self.delivery.forget(partitions)

    # ---- one batch -------------------------------------------------------------------------
    async def process(self, messages: Sequence[Message]) -> list[Message]:
        """Process one batch; return the messages processed, which the caller acknowledges.

        Messages of partitions this worker no longer owns (buffered before a rebalance) are
        skipped and NOT acknowledged: their new owner replays them from the committed offset.
        Two writers of one partition's state would corrupt it, and acknowledging a skipped
        event would let its offset be committed unprocessed."""
        async with self.lock:
            # Ownership and readiness are read under the lock: a batch that waited for it
            # across a rebalance must not write state for a partition that moved away, nor
            # restore state from a table whose recovery is still running.
            if not self.ready():
                metrics.EVENTS.labels("not_ready").inc(len(messages))
                return []
            owned = set(self.owned)
            t0 = time.perf_counter()
            now = now_ms()
            out = Outbox()
            done: list[Message] = []
            by_borrower: dict[tuple[int, str], list[tuple[Any, int]]] = defaultdict(list)
            touched: set[int] = set()
            moved: set[int] = set()
            gaps: dict[int, int] = {}
            results: dict[str, int] = defaultdict(int)
            await self.start({m.partition for m in messages} & owned)
            for msg in messages:
                p, off = msg.partition, msg.offset
                if p not in owned:
                    results["not_owned"] += 1
                    continue
                st = self.state_for(p)
                delivery = st.accept(off)
                if delivery == "gap":
                    gaps.setdefault(p, st.position.next_offset)  # type: ignore[arg-type]
                    results["gap"] += 1
                    continue
                done.append(msg)
                if delivery == "replay":
                    results["replay_skipped"] += 1
                    continue
                moved.add(p)
                try:
                    co = decode(msg.value, msg.key, now_ms=now)
                except ContractError as err:
                    dl = dead_letters.dead_letter(
                        topic=msg.topic, partition=p, offset=off, timestamp_ms=_ts_ms(msg.timestamp), key=msg.key,
                        value=msg.value, error=err, now_ms=now, worker=self.worker_name)
                    out.add(self.pipe.dlq_out, msg.key or b"", dead_letters.encode(dl))
                    metrics.DEAD_LETTERS.labels(err.kind).inc()
                    results["invalid"] += 1
                    continue
                st.last_event_wall_ms = now
                watermark = st.watermark_ms
                results[st.process(co, off)] += 1
                touched.add(p)
                if too_late(co.occurred_at_ms, watermark, self.rules):
                    results["too_late_for_flags"] += 1
                    continue
                by_borrower[(p, co.borrower_id)].append((co, off))
            for r, n in results.items():
                metrics.EVENTS.labels(r).inc(n)
            if log.isEnabledFor(logging.DEBUG):
                spans = {p: (min(o), max(o)) for p, o in _offsets_by_partition(messages).items()}
                log.debug("batch offsets=%s results=%s owned=%s", spans, dict(results), sorted(owned))

            # Borrower flags (every valid event, late ones too: the rules look back 7 days).
            keys = [(p, f"{p}|{borrower_id}".encode()) for p, borrower_id in by_borrower]
            raws = self.borrowers_io.get_many(keys)
            for ((p, borrower_id), items), (_, key), raw in zip(by_borrower.items(), keys, raws, strict=True):
                state = BorrowerState.from_bytes(raw) if raw else None
                new_state, flags = apply_events(state, borrower_id, items, self.rules, now_ms=now)
                for f in flags:
                    out.add(self.pipe.flags_out, borrower_id.encode(), orjson.dumps(f))
                    metrics.FLAGS.labels(f["rule_id"], f["status"]).inc()
                self.borrowers_io.put(p, key, new_state.to_bytes())

            # Partial snapshots for the merge stage, one record per dimension value.
            for p in touched:
                self._add_partials(out, p, self.states[p])
            t1 = time.perf_counter()
            await out.flush()
            t2 = time.perf_counter()
            await self._persist(moved)  # every partition with a processed record (touched is a subset)
            self.delivery.arrived({m.partition for m in done})
            await self.delivery.seek_back(gaps)
            metrics.BATCH_SECONDS.labels("partition").observe(time.perf_counter() - t0)
            metrics.BATCH_MESSAGES.labels("partition").observe(len(messages))
            if log.isEnabledFor(logging.DEBUG):
                log.debug("batch of %d: compute %.1f ms, outputs delivered %.1f ms, state persisted %.1f ms",
                          len(messages), (t1 - t0) * 1e3, (t2 - t1) * 1e3, (time.perf_counter() - t2) * 1e3)
            return done

    def _add_partials(self, out: Outbox, p: int, st: PartitionRates) -> None:
        groups: dict[str, list[tuple[str, list[int]]]] = defaultdict(list)
        for key, counts in st.drain_dirty_cells().items():
            _, _, dim_value = key.split("|", 2)
            groups[dim_value].append((key, counts))
        for dim_value, cells in groups.items():
            out.add(self.pipe.partials, dim_value.encode(), encode_partials(p, cells))

    async def _persist(self, partitions: Iterable[int]) -> None:
        """Cells, seen ids and borrower states first; then the watermark (table + broadcast)."""
        partitions = list(partitions)
        for p in partitions:
            st = self.states[p]
            for k, v in st.state_changes():
                self.rates_io.put(p, f"{p}|{k}".encode(), v)
        # independent of each other: one round trip for both
        await asyncio.gather(self.rates_io.flush(), self.borrowers_io.flush())
        wm_out = Outbox()
        for p in partitions:
            st = self.states[p]
            wm = st.watermark_change()
            if wm is not None:
                self.rates_io.put(p, f"{p}|{wm[0]}".encode(), wm[1])
            if st.watermark_moved:
                for q in range(self.n_partials):
                    wm_out.add(self.pipe.partials, b"", encode_watermark(p, st.watermark_ms), partition=q)
                metrics.WATERMARK_LAG.labels(str(p)).set(max(0.0, (now_ms() - st.watermark_ms) / 1000))
            st.mark_persisted()
        await asyncio.gather(self.rates_io.flush(), wm_out.flush())  # the table's copy and the broadcast

    # ---- timers ----------------------------------------------------------------------------
    async def tick(self, caught_up: set[int], housekeeping: bool = True) -> list[int]:
        """Wall-clock work: close windows of idle partitions; with `housekeeping`, also expire
        old windows and sweep a slice of idle borrowers. Returns the partitions whose
        watermark moved.

        A partition is idle when it has had no event for idle_close_s AND its consumer has
        read everything up to the high watermark: a backlog (a restart, a slow start, a
        backfill) must never be mistaken for silence, or its events would all become late."""
        async with self.lock:
            if not self.ready():
                return []
            assigned = set(self.owned)
            await self.load(assigned)
            now = now_ms()
            idle_ms = self.pipe.settings.worker.idle_close_s * 1000
            moved = []
            for p in assigned:
                st = self.state_for(p)
                if st.last_event_wall_ms == MIN_TIME:
                    st.last_event_wall_ms = now  # idleness is measured from assignment on
                if p in caught_up and now - st.last_event_wall_ms >= idle_ms and st.advance_idle(now):
                    moved.append(p)
                if housekeeping:
                    st.expire(self.pipe.settings.worker.window_retention_s * 1000)
                    self._sweep_borrowers(p, st.watermark_ms)
            await self._persist([p for p in assigned if p in self.states])
            return moved

    def _sweep_borrowers(self, p: int, watermark_ms: int) -> None:
        """One slice of the pass over partition p's borrowers (streams.core.flags.sweep);
        the changes go out with the next persist."""
        if watermark_ms == MIN_TIME:
            return
        w = self.pipe.settings.worker
        scan = self._sweeps.get(p)
        if scan is None:
            if time.monotonic() < self._sweep_due.get(p, 0.0):
                return
            self._sweep_due[p] = time.monotonic() + w.borrower_sweep_interval_s
            scan = self._sweeps[p] = self.borrowers_io.scan(p)
        keys = scan.next(w.borrower_sweep_batch)
        if not keys:
            del self._sweeps[p]
            return
        deleted = 0
        for key in keys:
            raw = self.borrowers_io.get(p, key)
            if raw is None:
                continue
            state = BorrowerState.from_bytes(raw)
            kept = sweep(state, watermark_ms, self.rules)
            if kept is None:
                self.borrowers_io.put(p, key, None)
                deleted += 1
            elif (new := kept.to_bytes()) != raw:
                self.borrowers_io.put(p, key, new)
        if deleted:
            metrics.BORROWERS_SWEPT.inc(deleted)

    def partition_watermarks(self) -> dict[int, int]:
        return {p: st.watermark_ms for p, st in self.states.items() if st.watermark_ms != MIN_TIME}


def _offsets_by_partition(messages: Sequence[Message]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for m in messages:
        out[m.partition].append(m.offset)
    return out


def _ts_ms(ts: float | None) -> int | None:
    return int(ts * 1000) if ts else None


SOURCE_TOPIC = CALL_OUTCOMES
