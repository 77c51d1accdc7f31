"""Stage 1, per source partition of call-outcomes: decode, dead-letter, count, flag.

Per batch: decode every new record (contract violations go to the DLQ with their bytes), count
it into the partition's window cells (hangwatch.streams.core.partition_rates), apply the
borrower rules (hangwatch.streams.core.flags), then commit one Checkpoint: DLQ records, flags and
rate partial snapshots; the state changelog (window cells, seen ids, borrower states); the
borrower store; the watermark record (with the next offset to process) and its broadcast to the
merge stage; the acknowledgement. A crash anywhere in between replays the batch; the offsets and
ids in the state make the replay harmless (hangwatch.streams.core.partition_rates,
hangwatch.streams.core.flags). The watermark record's next offset decides what a delivered record
is: a replay of persisted work (skipped), the next record, or one after a gap the consumer left
(seek back; hangwatch.streams.core.positions).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import orjson

from hangwatch.platform.settings import Settings
from hangwatch.schemas.call_outcome import CallOutcome, ContractError
from hangwatch.schemas.topics import BORROWER_FLAGS, CALL_OUTCOMES, DLQ, RATE_PARTIALS, topic
from hangwatch.streams import changelogs, dead_letters, metrics
from hangwatch.streams.borrower_store import BorrowerStore, KeyScan
from hangwatch.streams.checkpoint import Checkpoint
from hangwatch.streams.core.flags import BorrowerState, apply_events, sweep, too_late
from hangwatch.streams.core.merge_rates import encode_partials, encode_watermark
from hangwatch.streams.core.partition_rates import MIN_TIME, PartitionRates, combine_records
from hangwatch.streams.core.rules_config import RuleSet, load_rules
from hangwatch.streams.ports import InputRecord
from hangwatch.streams.stage import Stage, StageIO

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class PartitionTopics:
    """Broker-side names of the topics the partition stage reads and writes."""

    source: str
    partials: str
    flags: str
    dlq: str
    rates_changelog: str
    borrowers_changelog: str

    @classmethod
    def from_settings(cls, s: Settings) -> PartitionTopics:
        name = s.kafka.topic
        return cls(source=name(CALL_OUTCOMES), partials=name(RATE_PARTIALS), flags=name(BORROWER_FLAGS),
                   dlq=name(DLQ), rates_changelog=changelogs.RATES.name(s.worker.app_id),
                   borrowers_changelog=changelogs.BORROWERS.name(s.worker.app_id))


class PartitionStage(Stage[PartitionRates]):
    name = "partition"
    registry_topic = CALL_OUTCOMES

    def __init__(self, settings: Settings, io: StageIO) -> None:
        self.topics = PartitionTopics.from_settings(settings)
        super().__init__(io, self.topics.source)
        w = settings.worker
        self.worker_settings = w
        self.sizes = w.window_sizes_s
        self.grace_ms = w.grace_s * 1000
        self.rules: RuleSet = load_rules(w.rules_file, w.timezone)
        self.n_partials = topic(RATE_PARTIALS).partitions
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self.decode = settings.privacy.decoder()  # ingest pseudonymisation, set once (docs/privacy.md)
        self.dlq_hash_key = settings.privacy.hash_key_bytes()
        self.borrowers = BorrowerStore(self.topics.borrowers_changelog, io.changelogs, w)
        self.sweeps = BorrowerSweeps(self.borrowers, self.rules, w.borrower_sweep_interval_s,
                                     w.borrower_sweep_batch)

    # ---- state per partition -----------------------------------------------------------------
    async def _restore(self, partitions: list[int]) -> dict[int, PartitionRates]:
        """Window state in memory, borrower states into their local store
        (hangwatch.streams.borrower_store): both changelogs read side by side."""
        _, rates = await asyncio.gather(self.borrowers.load(partitions),
                                        self.io.changelogs.read_latest(self.topics.rates_changelog, partitions,
                                                                       combine_records))
        out = {}
        for p in partitions:
            st = out[p] = PartitionRates.restore(p, self.sizes, self.grace_ms, rates[p])
            # a new owner: its snapshots must win over anything an earlier owner still sends
            st.claim_epoch(now_ms())
            log.info("partition %d: restored %d window cells, %d seen ids, watermark %s, next offset %s, epoch %d",
                     p, len(st.cells), len(st.seen), st.watermark_ms, st.position.next_offset, st.epoch)
        return out

    async def load(self, partitions: Iterable[int]) -> None:
        """Restore the partitions not loaded yet and persist their new epochs (in the watermark
        record) before anything is sent with them: the next owner restores an epoch at least as
        high as any on the partials topic and claims a higher one, whatever its clock says."""
        new = sorted(set(partitions) - set(self.states))
        await super().load(new)
        if new:
            cp = self.checkpoint()
            self._add_state(cp, new)
            await cp.commit()

    def _drop(self, partitions: list[int]) -> None:
        self.sweeps.forget(partitions)
        self.borrowers.forget(partitions)

    # ---- one batch -------------------------------------------------------------------------
    async def process(self, records: Sequence[InputRecord],
                      acknowledge: Callable[[list[InputRecord]], object] | None = None) -> list[InputRecord]:
        """Process one batch and commit it; returns the records processed (acknowledged)."""
        async with self.lock:
            # Ownership and readiness are read under the lock: a batch that waited for it
            # across a rebalance must not write state for a partition that moved away, nor
            # restore state while the group is rebalancing.
            if not self.ready():
                metrics.EVENTS.labels("not_ready").inc(len(records))
                return []
            t0 = time.perf_counter()
            now = now_ms()
            cp = self.checkpoint([self.borrowers])
            admitted = await self.admit(records, cp)
            results: Counter[str] = Counter(admitted.skipped)
            by_borrower = self._count(admitted.todo, cp, now, results)
            for r, n in results.items():
                metrics.EVENTS.labels(r).inc(n)
            self._flag(by_borrower, cp, now)
            moved = {r.partition for r in admitted.todo}
            for p in moved:
                self._add_partials(cp, p, self.states[p])
            self._add_state(cp, moved)
            t1 = time.perf_counter()
            await cp.commit(acknowledge)
            await self.settle_delivery(cp, admitted)
            metrics.BATCH_SECONDS.labels("partition").observe(time.perf_counter() - t0)
            metrics.BATCH_MESSAGES.labels("partition").observe(len(records))
            if log.isEnabledFor(logging.DEBUG):
                log.debug("batch of %d: results %s, compute %.1f ms, commit %.1f ms", len(records), dict(results),
                          (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3)
            return cp.processed

    def _count(self, todo: list[InputRecord], cp: Checkpoint, now: int, results: Counter[str]
               ) -> dict[tuple[int, str], list[tuple[CallOutcome, int]]]:
        """Decode and count each record; dead-letter the invalid ones. Returns the valid events
        per (partition, borrower) that the borrower rules still take."""
        by_borrower: dict[tuple[int, str], list[tuple[CallOutcome, int]]] = defaultdict(list)
        for r in todo:
            p, off = r.partition, r.offset
            try:
                co = self.decode(r.value, r.key, now_ms=now)
            except ContractError as err:
                dl = dead_letters.dead_letter(
                    topic=r.topic, partition=p, offset=off, timestamp_ms=_ts_ms(r.timestamp), key=r.key,
                    value=r.value, error=err, now_ms=now, worker=self.worker_name, hash_key=self.dlq_hash_key)
                cp.outputs.add(self.topics.dlq, dead_letters.masked_key(r.key), dead_letters.encode(dl))
                metrics.DEAD_LETTERS.labels(err.kind).inc()
                results["invalid"] += 1
                continue
            st = self.states[p]
            st.last_event_wall_ms = now
            watermark = st.watermark_ms
            results[st.process(co, off)] += 1
            if too_late(co.occurred_at_ms, watermark, self.rules):
                results["too_late_for_flags"] += 1
                continue
            by_borrower[(p, co.borrower_id)].append((co, off))
        return by_borrower

    def _flag(self, by_borrower: dict[tuple[int, str], list[tuple[CallOutcome, int]]], cp: Checkpoint,
              now: int) -> None:
        """Borrower rules over every valid event (late ones too: the rules look back 7 days)."""
        keys = [(p, f"{p}|{borrower_id}".encode()) for p, borrower_id in by_borrower]
        raws = self.borrowers.get_many(keys)
        for ((p, borrower_id), items), (_, key), raw in zip(by_borrower.items(), keys, raws, strict=True):
            state = BorrowerState.from_bytes(raw) if raw else None
            new_state, flags = apply_events(state, borrower_id, items, self.rules, now_ms=now)
            for f in flags:
                cp.outputs.add(self.topics.flags, borrower_id.encode(), orjson.dumps(f))
                metrics.FLAGS.labels(f["rule_id"], f["status"]).inc()
            self.borrowers.put(p, key, new_state.to_bytes())

    def _add_partials(self, cp: Checkpoint, p: int, st: PartitionRates) -> None:
        """Snapshots of the changed cells for the merge stage, one record per dimension value."""
        groups: dict[str, list[tuple[str, list[int]]]] = defaultdict(list)
        for key, counts in st.drain_dirty_cells().items():
            _, _, dim_value = key.split("|", 2)
            groups[dim_value].append((key, counts))
        for dim_value, cells in groups.items():
            cp.outputs.add(self.topics.partials, dim_value.encode(),
                           encode_partials(p, cells, st.epoch, st.position.next_offset))

    def _add_state(self, cp: Checkpoint, partitions: Iterable[int]) -> None:
        """Cells and seen ids as state; the watermark record and its broadcast as positions."""
        changelog = self.topics.rates_changelog
        for p in partitions:
            st = self.states[p]
            for k, v in st.state_changes():
                cp.state.add(changelog, f"{p}|{k}".encode(), v, p)
            wm = st.watermark_change()
            if wm is not None:
                cp.positions.add(changelog, f"{p}|{wm[0]}".encode(), wm[1], p)
            if st.watermark_moved:
                for q in range(self.n_partials):
                    cp.positions.add(self.topics.partials, b"", encode_watermark(p, st.watermark_ms, st.epoch), q)
                metrics.WATERMARK_LAG.labels(str(p)).set(max(0.0, (now_ms() - st.watermark_ms) / 1000))
            st.mark_persisted()

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
            w = self.worker_settings
            idle_ms = w.idle_close_s * 1000
            moved = []
            for p in assigned:
                st = self.state_for(p)
                if st.last_event_wall_ms == MIN_TIME:
                    st.last_event_wall_ms = now  # idleness is measured from assignment on
                if p in caught_up and now - st.last_event_wall_ms >= idle_ms and st.advance_idle(now):
                    moved.append(p)
                if housekeeping:
                    st.expire()
                    self.sweeps.step(p, st.watermark_ms)
            cp = self.checkpoint([self.borrowers])
            self._add_state(cp, [p for p in assigned if p in self.states])
            await cp.commit()
            return moved


class BorrowerSweeps:
    """Ages idle borrowers out of the store: one pass over a partition's keys every interval,
    a slice of `batch` keys per timer round (hangwatch.streams.core.flags.sweep decides). The
    changes go out with the next checkpoint."""

    def __init__(self, store: BorrowerStore, rules: RuleSet, interval_s: float, batch: int) -> None:
        self.store = store
        self.rules = rules
        self.interval_s = interval_s
        self.batch = batch
        self._scans: dict[int, KeyScan] = {}  # the pass under way per partition
        self._due: dict[int, float] = {}  # when the next pass may start

    def step(self, p: int, watermark_ms: int) -> None:
        if watermark_ms == MIN_TIME:
            return
        scan = self._scans.get(p)
        if scan is None:
            if time.monotonic() < self._due.get(p, 0.0):
                return
            self._due[p] = time.monotonic() + self.interval_s
            scan = self._scans[p] = self.store.scan(p)
        keys = scan.next(self.batch)
        if not keys:
            del self._scans[p]
            return
        deleted = 0
        for key in keys:
            raw = self.store.get(p, key)
            if raw is None:
                continue
            state = BorrowerState.from_bytes(raw)
            kept = sweep(state, watermark_ms, self.rules)
            if kept is None:
                self.store.put(p, key, None)
                deleted += 1
            elif (new := kept.to_bytes()) != raw:
                self.store.put(p, key, new)
        if deleted:
            metrics.BORROWERS_SWEPT.inc(deleted)

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._scans.pop(p, None)
            self._due.pop(p, None)


def _ts_ms(ts: float | None) -> int | None:
    return int(ts * 1000) if ts else None
