"""Stage 2, per partition of hangwatch-rate-partials: exact global counts, finals, spike alerts.

Partials are keyed by dimension|value, so one merge partition owns every window of a
dimension value: its counts across all source partitions and its spike baseline. Per batch:
apply partials and watermarks, finalize closed cells, run the spike detector on newly final
5-minute cells of branch/campaign/script_version in window order, send RateUpdates and
alerts and await delivery, then write the state changelog, then the position record (the
next partials offset to process: streams.core.positions); Faust acks the batch after that.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence

import orjson
from faust.types import Message

from hangwatch.schemas.topics import CALL_OUTCOMES, RATE_PARTIALS, topic
from hangwatch.streams import metrics
from hangwatch.streams.app import Pipeline
from hangwatch.streams.changelog_restore import stage_partitions
from hangwatch.streams.core.merge_rates import MergeRates, apply_message, is_alert_cell
from hangwatch.streams.core.spikes import AlertConfig, SpikeState, on_final_window
from hangwatch.streams.core.windows import parse_cell_key
from hangwatch.streams.delivery import DeliveryGuard
from hangwatch.streams.outbox import Outbox
from hangwatch.streams.table_io import ChangelogWriter

log = logging.getLogger(__name__)
SPIKE_PREFIX = "s|"


class MergeStage:
    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        a = pipe.settings.alerts
        self.alert_cfg = AlertConfig(
            window_size_s=a.window_size_s, baseline_s=a.baseline_s, min_connected=a.min_connected,
            min_baseline_connected=a.min_baseline_connected, z=a.z, min_relative_increase=a.min_relative_increase,
            resolve_after_windows=a.resolve_after_windows, timezone=pipe.settings.worker.timezone)
        self.n_sources = topic(CALL_OUTCOMES).partitions
        self.states: dict[int, MergeRates] = {}
        self.spikes: dict[int, dict[str, SpikeState]] = {}
        self.lock = asyncio.Lock()
        # Partitions this worker owns (the worker updates the set in place at rebalances) and
        # whether state may be read now (tables recovered, no rebalance running).
        self.owned: set[int] = set()
        self.ready: Callable[[], bool] = lambda: True
        self.io = ChangelogWriter(pipe.merge_changelog)
        self.delivery = DeliveryGuard(pipe.app, pipe.settings.kafka.topic(RATE_PARTIALS))

    def state_for(self, p: int) -> MergeRates:
        """The state of a partition `load` restored."""
        st = self.states.get(p)
        if st is None:
            raise RuntimeError(f"merge partition {p}: state used before it was loaded")
        return st

    async def load(self, partitions: Iterable[int]) -> None:
        """Restore the state of partitions not loaded yet from their changelog partitions
        (streams.changelog_restore: read from the broker)."""
        new = sorted(set(partitions) - set(self.states))
        if not new:
            return
        restored = await stage_partitions(self.pipe.settings.kafka, self.pipe.merge_changelog.get_topic_name(), new)
        for p in new:
            records = restored[p]
            st = self.states[p] = MergeRates.restore(self.n_sources, records)
            self.spikes[p] = {k[len(SPIKE_PREFIX):]: SpikeState.from_bytes(v) for k, v in records
                              if k.startswith(SPIKE_PREFIX)}
            log.info("merge partition %d: restored %d cells, %d spike states, next offset %s", p, len(st.cells),
                     len(self.spikes[p]), st.position.next_offset)

    async def start(self, partitions: Iterable[int]) -> None:
        """Load partitions' state; give those without a persisted position their start offset."""
        partitions = set(partitions)
        await self.load(partitions)
        await self.delivery.start({p: self.states[p].position for p in partitions})

    def positions(self, partitions: Iterable[int]) -> dict[int, int | None]:
        return {p: st.position.next_offset if (st := self.states.get(p)) else None for p in partitions}

    def forget(self, partitions: Iterable[int]) -> None:
        partitions = list(partitions)
        for p in partitions:
            self.states.pop(p, None)
            self.spikes.pop(p, None)
        self.delivery.forget(partitions)

    async def process(self, messages: Sequence[Message]) -> list[Message]:
        """Process one batch; return the messages processed (to acknowledge). Messages of
        partitions no longer owned are skipped and not acknowledged (see PartitionStage.process)."""
        async with self.lock:
            if not self.ready():  # as in PartitionStage.process
                return []
            owned = set(self.owned)
            t0 = time.perf_counter()
            touched: set[int] = set()
            gaps: dict[int, int] = {}
            done: list[Message] = []
            await self.start({m.partition for m in messages} & owned)
            for msg in messages:
                p = msg.partition
                if p not in owned:
                    continue
                st = self.state_for(p)
                delivery = st.accept(msg.offset)
                if delivery == "gap":
                    gaps.setdefault(p, st.position.next_offset)  # type: ignore[arg-type]
                    continue
                done.append(msg)
                if delivery == "process" and msg.value is not None:  # partials never send tombstones
                    apply_message(st, msg.value)
                    touched.add(p)
            await self._emit(touched)
            self.delivery.arrived({m.partition for m in done})
            await self.delivery.seek_back(gaps)
            metrics.BATCH_SECONDS.labels("merge").observe(time.perf_counter() - t0)
            metrics.BATCH_MESSAGES.labels("merge").observe(len(messages))
            return done

    async def _emit(self, partitions: Iterable[int]) -> None:
        now = int(time.time() * 1000)
        out = Outbox()
        spike_changes: list[tuple[int, str, SpikeState]] = []
        for p in partitions:
            st = self.states[p]
            for key, cell in st.finalize():
                if not is_alert_cell(key, self.alert_cfg.window_size_s):
                    continue
                _, start, dim, value = parse_cell_key(key)
                dv = f"{dim}|{value}"
                prev = self.spikes[p].get(dv)
                new_state, alerts = on_final_window(prev, dim, value, start, cell.total[1], cell.total[3],
                                                    self.alert_cfg, now)
                self.spikes[p][dv] = new_state
                spike_changes.append((p, dv, new_state))
                for a in alerts:
                    out.add(self.pipe.alerts_out, a["alert_id"].encode(), orjson.dumps(a))
                    metrics.ALERTS.labels(a["status"]).inc()
            final = provisional = 0
            for u in st.drain_updates(now):
                out.add(self.pipe.rates_out, u["key"].encode(), orjson.dumps(u))
                if u["final"]:
                    final += 1
                else:
                    provisional += 1
            # counted once per batch: a labelled child lookup per record showed in the profile
            metrics.RATE_UPDATES.labels("true").inc(final)
            metrics.RATE_UPDATES.labels("false").inc(provisional)
        await out.flush()
        positions = []
        for p in partitions:
            st = self.states[p]
            for k, v in st.state_changes():
                self.io.put(p, f"{p}|{k}".encode(), v)
            pos = st.position_change()
            if pos is not None:
                positions.append((p, pos))
            st.mark_persisted()
        for p, dv, s in spike_changes:
            self.io.put(p, f"{p}|{SPIKE_PREFIX}{dv}".encode(), s.to_bytes())
        await self.io.flush()
        # the positions only once everything they cover is on the changelog
        for p, (k, v) in positions:
            self.io.put(p, f"{p}|{k}".encode(), v)
        await self.io.flush()

    async def tick(self) -> None:
        """Expire old final cells."""
        async with self.lock:
            if not self.ready():
                return
            assigned = set(self.owned)
            await self.load(assigned)
            retention_ms = self.pipe.settings.worker.window_retention_s * 1000
            for p in assigned:
                self.state_for(p).expire(retention_ms)
            await self._emit([p for p in assigned if p in self.states])
