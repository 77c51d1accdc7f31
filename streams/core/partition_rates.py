"""Window counts of ONE source partition of call-outcomes: the first stage of the rates.

Why per partition: call-outcomes is keyed by borrower, so a branch's calls are spread over all
partitions. Each partition keeps exact counts of the events it owns and sends a *snapshot* of
every changed cell to the merge stage (streams.core.merge_rates), which sums the partitions.
Snapshots, not deltas, so that re-sending after a crash is harmless.

Exactly-once effects on at-least-once input, without Kafka transactions:
- `seen` remembers event_id -> (event time, source offset) while the event is inside the grace
  period. The same event_id at a *different* offset is a duplicate delivery and is skipped.
  The ids first seen in one batch are persisted as ONE record ("s|<first>-<last offset>"),
  not one record per event, and deleted when all of them are behind the watermark.
- Every cell stores the highest source offset applied to it, in the same record as its counts,
  so after a crash the replay of an event whose effect on that cell was already persisted is
  not applied twice (it only re-marks the cell dirty so its snapshot is sent again).
- The watermark record is persisted last (the shell writes it after the cells and seen ids).
  It also holds the next source offset to process (streams.core.positions): records below it
  are replays and are skipped, a record above it means the delivery skipped records.

Only the smallest window size is counted per event. A larger size that is a multiple of it
(300 s and 3600 s over 60 s) is *derived*: when a batch's snapshots are drained, each changed
smallest-size cell adds its change since the last drain to its derived cells' totals. An event
costs 10 cell updates instead of 30 (`python -m bench --only stages`, rates: 58,800 -> 86,000-
93,000 events/s). Derived totals are not persisted (rebuilt from the smallest-size cells on
restore); those cells are kept until their largest derived window is past retention. A size
that is not a multiple of the smallest is counted directly.

Owners and fencing: whoever loads the partition claims an *epoch* above every earlier owner's
(`claim_epoch`: the wall clock in ms, and above the persisted one), persisted in the watermark
record. Snapshots carry (epoch, position) and watermarks the epoch, so the merge stage can tell
a replaced owner's late snapshots (a worker paused past its session timeout that resumes and
finishes its batch) from the new owner's and drop them (streams.core.merge_rates). The same
zombie's late changelog writes are fenced when the state is read back (`combine_records`): per
cell the record with the highest applied source offset wins, not the latest one.

Lateness: an event is late when its time is before the partition's watermark
(max event time seen - grace). Late events are not counted here (the raw store keeps them and
`hangwatch reconcile` corrects closed windows). The watermark also moves with the wall clock
when the partition is idle (`advance_idle`), so windows close without further events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final, Literal

import orjson

from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.streams.core.positions import Delivery, Position
from hangwatch.streams.core.windows import N_COUNTS, dimension_suffixes, increments, parse_cell_key, window_start_s

MIN_TIME: Final = -(2**62)
Status = Literal["counted", "duplicate", "late", "replayed"]
# Keys of the persisted records (the shell prefixes them with the partition number).
CELL_PREFIX: Final = "c|"
SEEN_PREFIX: Final = "s|"
WATERMARK_KEY: Final = "w"


class PartitionRates:
    def __init__(self, partition: int, window_sizes_s: Iterable[int], grace_ms: int) -> None:
        self.partition = partition
        self.sizes = tuple(sorted(window_sizes_s))
        self.base = self.sizes[0]
        self.derived = tuple(s for s in self.sizes[1:] if s % self.base == 0)
        self.counted = tuple(s for s in self.sizes if s not in self.derived)
        # how long a smallest-size cell must live: until its largest derived window closes
        self._keep_for = max(self.derived, default=self.base)
        # derived cell key -> its counts (the sum of its smallest-size cells as last drained);
        # smallest-size cell key -> its derived cell keys. A smallest-size cell's list carries
        # its counts as last drained after the offset (not persisted): one list per cell, not
        # three objects, keeps the garbage collector's work down.
        self.derived_totals: dict[str, list[int]] = {}
        self._parents: dict[str, tuple[str, ...]] = {}
        self.grace_ms = grace_ms
        self.max_event_ms = MIN_TIME
        self.watermark_ms = MIN_TIME
        # The watermark as last persisted: expiry goes by it, not by the newer one in memory,
        # so a tombstone never reaches the changelog before a watermark that justifies it does.
        self.persisted_watermark_ms = MIN_TIME
        # cell key -> counts (N_COUNTS ints) + [applied source offset]
        self.cells: dict[str, list[int]] = {}
        self.seen: dict[str, tuple[int, int]] = {}
        # persisted seen records: key -> newest event time in it (for expiry)
        self.seen_records: dict[str, int] = {}
        self._dirty_cells: set[str] = set()
        self._new_seen: list[tuple[str, int, int]] = []
        self._deleted: set[str] = set()
        self._watermark_dirty = False
        # Next source offset to process, persisted in the watermark record.
        self.position = Position()
        # This owner's epoch (claim_epoch), persisted in the watermark record; 0: not claimed.
        self.epoch = 0
        self._epoch_dirty = False
        self.last_event_wall_ms = MIN_TIME

    def claim_epoch(self, now_ms: int) -> int:
        """Start a new owner's epoch (call it once the state is restored, before any batch):
        above the persisted one and at least the wall clock, so above any earlier owner's."""
        self.epoch = max(now_ms, self.epoch + 1)
        self._epoch_dirty = True
        return self.epoch

    def accept(self, offset: int) -> Delivery:
        """Whether to process the record at `offset` (streams.core.positions); call it for
        every record, invalid ones too."""
        return self.position.accept(offset)

    # ---- processing -------------------------------------------------------------------
    def process(self, e: CallOutcome, offset: int) -> Status:
        seen = self.seen.get(e.event_id)
        if seen is not None and seen[1] != offset:
            return "duplicate"
        t = e.occurred_at_ms
        if t < self.watermark_ms:
            return "late"
        if seen is None:
            self.seen[e.event_id] = (t, offset)
            self._new_seen.append((e.event_id, t, offset))
        status: Status = "replayed" if seen is not None else "counted"
        cells = self.cells
        dirty = self._dirty_cells
        inc = increments(e.outcome)
        suffixes = dimension_suffixes(e)
        for size in self.counted:
            prefix = f"{size}|{window_start_s(t, size)}|"
            for suffix in suffixes:
                key = prefix + suffix
                c = cells.get(key)
                if c is None:
                    c = [0] * (N_COUNTS + 1)
                    c[N_COUNTS] = -1
                    cells[key] = c
                    if size == self.base and self.derived:
                        dim, value = suffix.split("|", 1)
                        self._adopt(key, t, dim, value)
                        c.extend([0] * N_COUNTS)
                if offset > c[N_COUNTS]:
                    for i in inc:
                        c[i] += 1
                    c[N_COUNTS] = offset
                    status = "counted"
                dirty.add(key)
        if t > self.max_event_ms:
            self.max_event_ms = t
            wm = t - self.grace_ms
            if wm > self.watermark_ms:
                self.watermark_ms = wm
                self._watermark_dirty = True
        return status

    def _adopt(self, key: str, t_ms: int, dim: str, value: str) -> None:
        """Register a new smallest-size cell with the derived cells that sum it."""
        self._parents[key] = tuple(f"{size}|{window_start_s(t_ms, size)}|{dim}|{value}" for size in self.derived)

    def advance_idle(self, now_ms: int) -> bool:
        """Move the watermark with the wall clock (the partition had no events for a while).
        Returns True when it moved."""
        wm = now_ms - self.grace_ms
        if wm > self.watermark_ms:
            self.watermark_ms = wm
            self._watermark_dirty = True
            return True
        return False

    # ---- expiry -----------------------------------------------------------------------
    def expire(self, retention_ms: int = 0) -> int:
        """Forget seen ids older than the watermark (a re-delivery is late anyway) and cells of
        windows that closed more than `retention_ms` ago (a smallest-size cell: once its largest
        derived window did). Returns how many records went.

        The default keeps nothing past its close: a closed window can take no more events here,
        and its final counts live on in the merge stage, which keeps them for
        worker.window_retention_s. The watermark that decides is the persisted one: were a
        crash to keep the newer watermark off the changelog while the deletions got there, the
        replay would count events again into cells (and as ids) that were already gone."""
        wm = self.persisted_watermark_ms
        if wm == MIN_TIME:
            return 0
        gone = [eid for eid, (t, _) in self.seen.items() if t < wm]
        for eid in gone:
            del self.seen[eid]
        old_seen = [k for k, newest in self.seen_records.items() if newest < wm]
        for k in old_seen:
            del self.seen_records[k]
            self._deleted.add(k)
        limit_s = (wm - retention_ms) // 1000
        old = []
        keep_for = self._keep_for
        for key in self.cells:
            size, start, _, _ = parse_cell_key(key)
            if size == self.base:
                size = keep_for  # its derived windows need it until the largest one expires
                start = start // size * size
            if start + size <= limit_s:
                old.append(key)
        for key in old:
            del self.cells[key]
            self._parents.pop(key, None)
            self._dirty_cells.discard(key)
            self._deleted.add(CELL_PREFIX + key)
        for key in [k for k in self.derived_totals if sum(parse_cell_key(k)[:2]) <= limit_s]:
            del self.derived_totals[key]
        return len(gone) + len(old) + len(old_seen)

    # ---- snapshots and persistence ----------------------------------------------------
    def drain_dirty_cells(self) -> dict[str, list[int]]:
        """Changed cells since the last drain: key -> counts (without the offset)."""
        # A derived cell moves by the change of each of its smallest-size cells since the last
        # drain: a few additions per changed cell, not a re-sum of up to 60 cells per hour.
        cells = self.cells
        parents_of = self._parents
        totals = self.derived_totals
        out: dict[str, list[int]] = {}
        moved: set[str] = set()
        drained_at = N_COUNTS + 1
        for k in self._dirty_cells:
            c = cells[k]
            counts = c[:N_COUNTS]
            out[k] = counts
            parents = parents_of.get(k)
            if parents is None:
                continue
            moved.update(parents)
            drained = c[drained_at:]
            if counts == drained:
                continue
            delta = [a - b for a, b in zip(counts, drained, strict=True)]
            for pk in parents:
                t = totals.get(pk)
                if t is None:
                    totals[pk] = list(delta)
                else:
                    for i, d in enumerate(delta):
                        t[i] += d
            c[drained_at:] = counts
        for pk in moved:
            t = totals.get(pk)
            if t is not None:  # else that derived window expired; its smallest cells live on for a larger one
                out[pk] = list(t)
        return out

    def state_changes(self) -> Iterator[tuple[str, bytes | None]]:
        """Records to persist (key, value or None for delete), cells and seen ids first.
        The watermark comes from `watermark_change` and must be written after these.
        Iterating hands over the batch's new seen ids as one record (call it once per persist)."""
        for k in self._dirty_cells:
            yield CELL_PREFIX + k, orjson.dumps(self.cells[k][:N_COUNTS + 1])
        if self._new_seen:
            offsets = [o for _, _, o in self._new_seen]
            key = f"{SEEN_PREFIX}{min(offsets)}-{max(offsets)}"
            self.seen_records[key] = max(t for _, t, _ in self._new_seen)
            self._deleted.discard(key)
            yield key, orjson.dumps(self._new_seen)
            self._new_seen = []
        for k in self._deleted:
            yield k, None

    @property
    def watermark_moved(self) -> bool:
        """The watermark moved since the last persist (the shell broadcasts it)."""
        return self._watermark_dirty

    def watermark_change(self) -> tuple[str, bytes] | None:
        """The watermark + position record, when either changed; written last."""
        if not (self._watermark_dirty or self.position.dirty or self._epoch_dirty):
            return None
        return WATERMARK_KEY, orjson.dumps([self.max_event_ms, self.watermark_ms, self.position.next_offset,
                                            self.epoch])

    def mark_persisted(self) -> None:
        self.persisted_watermark_ms = self.watermark_ms
        self._dirty_cells.clear()
        self._new_seen = []
        self._deleted.clear()
        self._watermark_dirty = False
        self._epoch_dirty = False
        self.position.dirty = False

    @classmethod
    def restore(cls, partition: int, window_sizes_s: Iterable[int], grace_ms: int,
                records: Iterable[tuple[str, bytes]]) -> PartitionRates:
        """Rebuild from persisted records (keys without the partition prefix)."""
        st = cls(partition, window_sizes_s, grace_ms)
        for key, value in records:
            if value is None:
                continue
            if key.startswith(CELL_PREFIX):
                c = orjson.loads(value)
                cell = key[len(CELL_PREFIX):]
                size, start, dim, dim_value = parse_cell_key(cell)
                if size in st.derived:
                    st._deleted.add(key)  # written before sizes were derived: recomputed now
                elif len(c) == N_COUNTS + 1:
                    st.cells[cell] = c
                    if size == st.base and st.derived:
                        st._adopt(cell, start * 1000, dim, dim_value)
                        counts = c[:N_COUNTS]
                        c.extend(counts)  # drained: the derived totals below include it
                        for pk in st._parents[cell]:
                            totals = st.derived_totals.setdefault(pk, [0] * N_COUNTS)
                            for i in range(N_COUNTS):
                                totals[i] += counts[i]
            elif key.startswith(SEEN_PREFIX):
                entries: list[Any] = orjson.loads(value)
                if len(entries) == 2 and all(type(x) is int for x in entries):
                    # written before ids were batched: "s|<event_id>" -> [event time, offset]
                    entries = [[key[len(SEEN_PREFIX):], *entries]]
                for eid, t, off in entries:
                    st.seen[eid] = (t, off)
                st.seen_records[key] = max((t for _, t, _ in entries), default=MIN_TIME)
            elif key == WATERMARK_KEY:
                w = orjson.loads(value)
                st.max_event_ms, st.watermark_ms = w[0], w[1]
                st.persisted_watermark_ms = w[1]
                st.position.next_offset = w[2] if len(w) > 2 else None  # written before positions existed
                st.epoch = w[3] if len(w) > 3 else 0  # written before epochs existed
        return st


def _watermark_stamp(w: list[Any]) -> tuple[int, int]:
    """(epoch, next offset) of a watermark record; older formats lack them (0 / -1)."""
    epoch = w[3] if len(w) > 3 else 0
    position = w[2] if len(w) > 2 and w[2] is not None else -1
    return epoch, position


def combine_records(key: str, old: bytes, new: bytes) -> bytes:
    """The value a restore keeps when the rates changelog holds `old` and then `new` for `key`
    (key without its partition prefix). Latest-wins, except where a late write of a replaced
    owner (a zombie) could roll state back: a cell keeps the record with the higher applied
    source offset (a zombie's cell never has a higher one than the owner that replayed its batch
    and went on), the watermark record the one with the higher (epoch, next offset)."""
    if key.startswith(CELL_PREFIX):
        a, b = orjson.loads(old), orjson.loads(new)
        if len(a) == len(b) == N_COUNTS + 1 and a[N_COUNTS] > b[N_COUNTS]:
            return old
        return new
    if key == WATERMARK_KEY:
        return old if _watermark_stamp(orjson.loads(old)) > _watermark_stamp(orjson.loads(new)) else new
    return new
