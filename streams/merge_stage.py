"""Stage 2, per partition of hangwatch-rate-partials: exact global counts, finals, spike alerts.

Partials are keyed by dimension|value, so one merge partition owns every window of a
dimension value: its counts across all source partitions and its spike baseline. Per batch:
apply partials and watermarks, finalize closed cells, run the spike detector on newly final
1-minute cells (alerts.window_size_s) of branch/campaign/script_version in window order, drop
final cells older than worker.window_retention_s, then commit one Checkpoint:
RateUpdates and alerts; the state changelog (merged cells, spike states); the position record
(the next partials offset to process: hangwatch.streams.core.positions); the acknowledgement.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import orjson

from hangwatch.platform.settings import Settings
from hangwatch.schemas.topics import CALL_OUTCOMES, HANGUP_ALERTS, HANGUP_RATES, RATE_PARTIALS, topic
from hangwatch.streams import changelogs, metrics
from hangwatch.streams.checkpoint import Checkpoint
from hangwatch.streams.core.merge_rates import MergeRates, apply_message, combine_records, is_alert_cell
from hangwatch.streams.core.spikes import AlertConfig, SpikeState, on_final_window
from hangwatch.streams.core.windows import parse_cell_key
from hangwatch.streams.ports import InputRecord
from hangwatch.streams.stage import Stage, StageIO

log = logging.getLogger(__name__)
SPIKE_PREFIX = "s|"


@dataclass(frozen=True)
class MergeTopics:
    """Broker-side names of the topics the merge stage reads and writes."""

    partials: str
    rates: str
    alerts: str
    changelog: str

    @classmethod
    def from_settings(cls, s: Settings) -> MergeTopics:
        name = s.kafka.topic
        return cls(partials=name(RATE_PARTIALS), rates=name(HANGUP_RATES), alerts=name(HANGUP_ALERTS),
                   changelog=changelogs.MERGE.name(s.worker.app_id))


def alert_config(s: Settings) -> AlertConfig:
    a = s.alerts
    return AlertConfig(
        window_size_s=a.window_size_s, baseline_s=a.baseline_s, min_connected=a.min_connected,
        min_baseline_connected=a.min_baseline_connected, z=a.z, min_relative_increase=a.min_relative_increase,
        resolve_after_windows=a.resolve_after_windows, timezone=s.worker.timezone, seasonal_days=a.seasonal_days,
        min_seasonal_connected=a.min_seasonal_connected, seasonal_relative_increase=a.seasonal_relative_increase,
        scan_windows=a.scan_windows, min_scan_windows=a.min_scan_windows, rate_drift=a.rate_drift)


class MergeStage(Stage[MergeRates]):
    name = "merge"
    registry_topic = RATE_PARTIALS

    def __init__(self, settings: Settings, io: StageIO) -> None:
        self.topics = MergeTopics.from_settings(settings)
        super().__init__(io, self.topics.partials)
        self.alert_cfg = alert_config(settings)
        self.retention_ms = settings.worker.window_retention_s * 1000
        self.n_sources = topic(CALL_OUTCOMES).partitions
        self.spikes: dict[int, dict[str, SpikeState]] = {}  # partition -> dimension|value -> state

    async def _restore(self, partitions: list[int]) -> dict[int, MergeRates]:
        restored = await self.io.changelogs.read_latest(self.topics.changelog, partitions, combine_records)
        out = {}
        for p in partitions:
            records = restored[p]
            st = out[p] = MergeRates.restore(self.n_sources, records)
            self.spikes[p] = {k[len(SPIKE_PREFIX):]: SpikeState.from_bytes(v) for k, v in records
                              if k.startswith(SPIKE_PREFIX)}
            log.info("merge partition %d: restored %d cells, %d spike states, next offset %s", p, len(st.cells),
                     len(self.spikes[p]), st.position.next_offset)
        return out

    def _drop(self, partitions: list[int]) -> None:
        for p in partitions:
            self.spikes.pop(p, None)

    async def process(self, records: Sequence[InputRecord],
                      acknowledge: Callable[[list[InputRecord]], object] | None = None) -> list[InputRecord]:
        """Process one batch and commit it; returns the records processed (acknowledged)."""
        async with self.lock:
            if not self.ready():  # as in PartitionStage.process
                return []
            t0 = time.perf_counter()
            cp = self.checkpoint()
            admitted = await self.admit(records, cp)
            touched: set[int] = set()
            for r in admitted.todo:
                if r.value is not None:  # partials never send tombstones
                    apply_message(self.states[r.partition], r.value)
                    touched.add(r.partition)
            for p in touched:
                st = self.states[p]
                if st.stale_partials:
                    log.warning("merge partition %d: dropped %d stale snapshots of a replaced owner (a worker "
                                "that resumed after its partitions moved)", p, st.stale_partials)
                    st.stale_partials = 0
            self._emit(cp, touched)
            await cp.commit(acknowledge)
            await self.settle_delivery(cp, admitted)
            metrics.BATCH_SECONDS.labels("merge").observe(time.perf_counter() - t0)
            metrics.BATCH_MESSAGES.labels("merge").observe(len(records))
            return cp.processed

    def _emit(self, cp: Checkpoint, partitions: Iterable[int]) -> None:
        """Finals through the spike detector, rate updates and alerts as outputs; merged cells
        and spike states as state; the partitions' positions last."""
        now = int(time.time() * 1000)
        for p in partitions:
            st = self.states[p]
            for key, cell in st.finalize():
                if not is_alert_cell(key, self.alert_cfg.window_size_s):
                    continue
                _, start, dim, value = parse_cell_key(key)
                dv = f"{dim}|{value}"
                total = cell.total
                new_state, alerts = on_final_window(self.spikes[p].get(dv), dim, value, start, total[1],
                                                    total[3], self.alert_cfg, now)
                self.spikes[p][dv] = new_state
                cp.state.add(self.topics.changelog, f"{p}|{SPIKE_PREFIX}{dv}".encode(), new_state.to_bytes(), p)
                for a in alerts:
                    cp.outputs.add(self.topics.alerts, a["alert_id"].encode(), orjson.dumps(a))
                    metrics.ALERTS.labels(a["status"]).inc()
            final = provisional = 0
            for u in st.drain_updates(now):
                cp.outputs.add(self.topics.rates, u["key"].encode(), orjson.dumps(u))
                if u["final"]:
                    final += 1
                else:
                    provisional += 1
            # counted once per batch: a labelled child lookup per record showed in the profile
            metrics.RATE_UPDATES.labels("true").inc(final)
            metrics.RATE_UPDATES.labels("false").inc(provisional)
            # with every batch, after the finals went out: a backlog moves the watermark by
            # days of event time between two timer rounds
            st.expire(self.retention_ms)
            for k, v in st.state_changes():
                cp.state.add(self.topics.changelog, f"{p}|{k}".encode(), v, p)
            pos = st.position_change()
            if pos is not None:  # only once everything it covers is on the changelog
                cp.positions.add(self.topics.changelog, f"{p}|{pos[0]}".encode(), pos[1], p)
            st.mark_persisted()

    async def tick(self) -> None:
        """Expire old final cells of partitions that had no batch since their watermark moved."""
        async with self.lock:
            if not self.ready():
                return
            assigned = set(self.owned)
            await self.load(assigned)
            cp = self.checkpoint()
            self._emit(cp, [p for p in assigned if p in self.states])
            await cp.commit()
