"""The merge stage of the rates: exact global counts per cell from per-partition snapshots.

Input (topic hangwatch-rate-partials, keyed by dimension|value so that every window of one
dimension value lives on one merge partition, which the spike baseline needs):
- a partial: (source partition, cell key, counts snapshot, stamp) -> replaces that partition's
  share, unless the share held has a newer stamp;
- a watermark: (source partition, watermark ms, epoch) -> monotonic max per source partition.

Fencing. A snapshot is stamped (epoch, position): the epoch of the source partition's owner
(claimed when it loads the partition: above every earlier owner's, streams.core.partition_rates)
and the source position the snapshot reflects (every offset below it processed). Two workers
can briefly both process a source partition: one paused (SIGSTOP, a long GC) past its session
timeout is replaced, and when it resumes it still thinks it owns the partition and sends the
snapshots of the batch it had in flight, after the new owner's newer ones. Latest-wins would let
those overwrite the newer shares, and a cell the new owner does not touch again stays short,
final included (the soak's paused-worker bug). So a share is replaced only by a snapshot with a
stamp at least as new, and a source partition's records from an epoch older than one already
seen are dropped (`stale_partials`). The stamps of the shares are persisted with the merged cell,
and a restore joins every record of a cell it reads (per source, the share with the newest
stamp: `combine_records`), so a paused merge worker's late changelog writes cannot roll a
cell back either.

A cell is final once the global watermark (the minimum over ALL source partitions) has passed
its window end: no source partition can count another event for it. Because a partition sends
its partials before the watermark that covers them, on one ordered Kafka partition, a final
cell already holds every share. Output: one RateUpdate per changed cell per batch, with a
version that increases per key and `final` set once closed.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterable, Iterator
from typing import Final

import orjson

from hangwatch.schemas.records import ALERT_DIMENSIONS, RateUpdate
from hangwatch.streams.core.partition_rates import MIN_TIME
from hangwatch.streams.core.positions import Delivery, Position
from hangwatch.streams.core.windows import N_COUNTS, parse_cell_key, rate_update

CELL_PREFIX: Final = "m|"
SRC_WM_PREFIX: Final = "w|"
SRC_EPOCH_PREFIX: Final = "e|"
POSITION_KEY: Final = "o"


# A snapshot's stamp: (epoch of the source partition's owner, source position it reflects).
Stamp = tuple[int, int]


class MergedCell:
    """One cell's shares, one per source partition, flat: a backlog holds hundreds of
    thousands of open cells, and a dict of lists plus a dict of tuples per cell cost several
    times the memory (bench/HISTORY.md). Share `src` is counts[src * N_COUNTS:][:N_COUNTS];
    its stamp is stamp_words[2 * src], stamp_words[2 * src + 1]. Bit `src` of `present` says
    the share exists (an absent one counts as zeros), of `stamped` that it has a stamp."""

    __slots__ = ("counts", "final", "present", "stamp_words", "stamped", "version")

    def __init__(self) -> None:
        self.counts: list[int] = []
        # array, not list: epochs and positions are large ints, a separate object each in a list
        self.stamp_words = array("q")
        self.present = 0
        self.stamped = 0
        self.version = 0
        self.final = False

    # -- shares and stamps -----------------------------------------------------------------
    def stamp(self, src: int) -> Stamp | None:
        if not self.stamped >> src & 1:
            return None
        return self.stamp_words[2 * src], self.stamp_words[2 * src + 1]

    def set_share(self, src: int, counts: list[int]) -> bool:
        """Hold `counts` as the share of `src`; True when that changed it."""
        mine = self.counts
        base = src * N_COUNTS
        changed = not self.present >> src & 1
        if changed:
            if len(mine) < base + N_COUNTS:
                mine.extend([0] * (base + N_COUNTS - len(mine)))
            self.present |= 1 << src
        for i in range(N_COUNTS):
            if mine[base + i] != counts[i]:
                mine[base + i] = counts[i]
                changed = True
        return changed

    def set_stamp(self, src: int, stamp: Stamp) -> None:
        if len(self.stamp_words) < 2 * (src + 1):
            self.stamp_words.extend([0] * (2 * (src + 1) - len(self.stamp_words)))
        self.stamp_words[2 * src] = stamp[0]
        self.stamp_words[2 * src + 1] = stamp[1]
        self.stamped |= 1 << src

    @property
    def parts(self) -> dict[int, list[int]]:
        """source partition -> its share (a copy)."""
        return {src: self.counts[src * N_COUNTS:(src + 1) * N_COUNTS] for src in _bits(self.present)}

    @property
    def stamps(self) -> dict[int, Stamp]:
        """source partition -> the stamp of its share (absent: written before snapshots were
        stamped)."""
        words = self.stamp_words
        return {src: (words[2 * src], words[2 * src + 1]) for src in _bits(self.stamped)}

    @property
    def total(self) -> list[int]:
        """The counts summed over the shares (absent shares are zeros)."""
        total = [0] * N_COUNTS
        counts = self.counts
        for base in range(0, len(counts), N_COUNTS):
            for i in range(N_COUNTS):
                total[i] += counts[base + i]
        return total

    # -- persistence -------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return orjson.dumps({"p": {str(k): v for k, v in self.parts.items()}, "v": self.version, "f": self.final,
                             "s": {str(k): list(v) for k, v in self.stamps.items()}})

    @classmethod
    def from_bytes(cls, raw: bytes) -> MergedCell:
        d = orjson.loads(raw)
        c = cls()
        for k, v in d["p"].items():
            c.set_share(int(k), v)
        for k, v in d.get("s", {}).items():
            c.set_stamp(int(k), (v[0], v[1]))
        c.version = d["v"]
        c.final = d["f"]
        return c

    def join(self, other: MergedCell) -> bool:
        """Take each share of `other` that is newer than the one held (by stamp; a share without
        a stamp counts as older than any stamped one, and an unstamped pair: `other` wins).
        Returns True when a share changed."""
        changed = False
        for src, counts in other.parts.items():
            theirs = other.stamp(src)
            mine = self.stamp(src)
            if self.present >> src & 1 and mine is not None and (theirs is None or theirs < mine):
                continue
            if theirs is not None:
                self.set_stamp(src, theirs)
            if self.set_share(src, counts):
                changed = True
        self.version = max(self.version, other.version)
        self.final = self.final or other.final
        return changed


def _bits(mask: int) -> list[int]:
    """The positions of the bits set in `mask`, lowest first."""
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


class MergeRates:
    """State of one partition of the partials topic."""

    def __init__(self, n_sources: int) -> None:
        self.n_sources = n_sources
        self.cells: dict[str, MergedCell] = {}
        self.src_watermarks: dict[int, int] = {}
        # newest owner epoch seen per source partition: records of older epochs are stale
        self.src_epochs: dict[int, int] = {}
        self._dirty: set[str] = set()
        self._dirty_wm: set[int] = set()
        self._dirty_epochs: set[int] = set()
        self._restamped: set[str] = set()
        self._deleted: set[str] = set()
        self.ignored_partials = 0
        self.stale_partials = 0  # snapshots (and watermarks) dropped as older than what is held
        # (window end s, key) of every cell not final yet: finalize() pops the closed ones
        # instead of scanning all cells on every batch (small batches at low rates).
        self._open: list[tuple[int, str]] = []
        # (window end s, key) of every final cell: expire() pops the expired ones instead of
        # scanning all cells, so it can run with every batch (a backlog moves the watermark by
        # days of event time between two timer rounds, and the cells pile up meanwhile).
        self._closed: list[tuple[int, str]] = []
        # Next offset of this partials partition to process (streams.core.positions).
        self.position = Position()

    def accept(self, offset: int) -> Delivery:
        return self.position.accept(offset)

    def position_change(self) -> tuple[str, bytes] | None:
        """The position record, when it changed; the shell writes it after `state_changes`
        are on the changelog, so a persisted position never runs ahead of the cells."""
        if not self.position.dirty:
            return None
        return POSITION_KEY, orjson.dumps(self.position.next_offset)

    def admit_epoch(self, src: int, epoch: int | None) -> bool:
        """Whether a record of source partition `src` sent by an owner of `epoch` is current
        (None: an unstamped record, written before snapshots were stamped). An epoch older than
        one already seen is a replaced owner's (a zombie's): its records are dropped."""
        if epoch is None:
            return True
        seen = self.src_epochs.get(src)
        if seen is not None and epoch < seen:
            return False
        if seen is None or epoch > seen:
            self.src_epochs[src] = epoch
            self._dirty_epochs.add(src)
        return True

    def apply_partial(self, src: int, key: str, counts: list[int], stamp: Stamp | None = None) -> bool:
        """Apply one partition's snapshot of a cell. Returns False (and changes nothing) for a
        snapshot older than the share held (by stamp), and for a cell that is already closed and
        expired from state: its other shares are gone, so the result would be wrong;
        `hangwatch reconcile` corrects such windows from the raw store."""
        cell = self.cells.get(key)
        if cell is None:
            size, start, _, _ = parse_cell_key(key)
            if (start + size) * 1000 <= self.global_watermark_ms():
                self.ignored_partials += 1
                return False
            cell = self.cells[key] = MergedCell()
            heapq.heappush(self._open, (start + size, key))
        if stamp is not None:
            held = cell.stamp(src)
            if held is not None and stamp < held:
                self.stale_partials += 1
                return False
            if held != stamp:
                cell.set_stamp(src, stamp)
                self._restamped.add(key)  # persisted even when the counts are equal (not emitted)
        if cell.set_share(src, counts):
            self._dirty.add(key)
        return True

    def apply_watermark(self, src: int, watermark_ms: int) -> None:
        if watermark_ms > self.src_watermarks.get(src, MIN_TIME):
            self.src_watermarks[src] = watermark_ms
            self._dirty_wm.add(src)

    def global_watermark_ms(self) -> int:
        return min((self.src_watermarks.get(p, MIN_TIME) for p in range(self.n_sources)), default=MIN_TIME)

    def finalize(self) -> list[tuple[str, MergedCell]]:
        """Mark closed cells final; return the newly final ones in window-start order."""
        gw_s = self.global_watermark_ms() // 1000
        newly = []
        open_cells = self._open
        while open_cells and open_cells[0][0] <= gw_s:
            end_s, key = heapq.heappop(open_cells)
            cell = self.cells.get(key)
            if cell is None or cell.final:
                continue
            cell.final = True
            self._dirty.add(key)
            heapq.heappush(self._closed, (end_s, key))
            _, start, _, _ = parse_cell_key(key)
            newly.append((start, key, cell))
        newly.sort(key=lambda x: (x[0], x[1]))
        return [(k, c) for _, k, c in newly]

    def drain_updates(self, now_ms: int) -> list[RateUpdate]:
        """RateUpdate records of every changed cell.

        The version is max(previous + 1, now in ms): strictly increasing per key within this
        state, and also above anything an earlier owner of the key emitted (clocks agree to
        far better than the time a takeover takes), so the newest record always wins."""
        out = []
        for key in sorted(self._dirty):
            cell = self.cells.get(key)
            if cell is None:
                continue
            cell.version = max(cell.version + 1, now_ms)
            out.append(rate_update(key, cell.total, version=cell.version, final=cell.final, now_ms=now_ms))
        return out

    def expire(self, retention_ms: int) -> int:
        """Drop final cells whose window ended more than retention_ms before the global watermark."""
        gw = self.global_watermark_ms()
        if gw == MIN_TIME:
            return 0
        limit_s = (gw - retention_ms) // 1000
        closed = self._closed
        n = 0
        while closed and closed[0][0] <= limit_s:
            _, k = heapq.heappop(closed)
            cell = self.cells.get(k)
            if cell is None or not cell.final:
                continue
            del self.cells[k]
            self._dirty.discard(k)
            self._restamped.discard(k)
            self._deleted.add(CELL_PREFIX + k)
            n += 1
        return n

    def state_changes(self) -> Iterator[tuple[str, bytes | None]]:
        for k in self._dirty:
            cell = self.cells.get(k)
            if cell is not None:
                yield CELL_PREFIX + k, cell.to_bytes()
        for k in self._restamped - self._dirty:
            cell = self.cells.get(k)
            if cell is not None:
                yield CELL_PREFIX + k, cell.to_bytes()
        for src in self._dirty_wm:
            yield f"{SRC_WM_PREFIX}{src}", orjson.dumps(self.src_watermarks[src])
        for src in self._dirty_epochs:
            yield f"{SRC_EPOCH_PREFIX}{src}", orjson.dumps(self.src_epochs[src])
        for k in self._deleted:
            yield k, None

    def mark_persisted(self) -> None:
        self._dirty.clear()
        self._restamped.clear()
        self._dirty_wm.clear()
        self._dirty_epochs.clear()
        self._deleted.clear()
        self.position.dirty = False

    @classmethod
    def restore(cls, n_sources: int, records: Iterable[tuple[str, bytes]]) -> MergeRates:
        st = cls(n_sources)
        for key, value in records:
            if value is None:
                continue
            if key.startswith(CELL_PREFIX):
                cell_key = key[len(CELL_PREFIX):]
                cell = st.cells[cell_key] = MergedCell.from_bytes(value)
                size, start, _, _ = parse_cell_key(cell_key)
                (st._closed if cell.final else st._open).append((start + size, cell_key))
            elif key.startswith(SRC_WM_PREFIX):
                st.src_watermarks[int(key[len(SRC_WM_PREFIX):])] = orjson.loads(value)
            elif key.startswith(SRC_EPOCH_PREFIX):
                st.src_epochs[int(key[len(SRC_EPOCH_PREFIX):])] = orjson.loads(value)
            elif key == POSITION_KEY:
                st.position.next_offset = orjson.loads(value)
        heapq.heapify(st._open)
        heapq.heapify(st._closed)
        return st


def is_alert_cell(key: str, alert_window_s: int) -> bool:
    size, _, dim, _ = parse_cell_key(key)
    return size == alert_window_s and dim in ALERT_DIMENSIONS


def combine_records(key: str, old: bytes, new: bytes) -> bytes:
    """The value a restore keeps when the merge changelog holds `old` and then `new` for `key`
    (key without its partition prefix). Latest-wins, except where a late write of a replaced
    owner could roll state back: a merged cell keeps, per source partition, the share with the
    newest stamp (MergedCell.join); positions, source watermarks and epochs keep the maximum."""
    if key.startswith(CELL_PREFIX):
        cell = MergedCell.from_bytes(old)
        cell.join(MergedCell.from_bytes(new))
        return cell.to_bytes()
    if key == POSITION_KEY or key.startswith(SRC_WM_PREFIX) or key.startswith(SRC_EPOCH_PREFIX):
        a, b = orjson.loads(old), orjson.loads(new)
        return old if a is not None and (b is None or a > b) else new
    return new


# Partials wire format (internal topic): compact JSON arrays, decoded with one orjson.loads.
#   ["p", src_partition, [[cell_key, [counts...]], ...], epoch, position]
#   ["w", src_partition, watermark_ms, epoch]
# epoch and position (the stamp, see the module docstring) are absent in records written before
# snapshots were stamped; those are applied unfenced.
def encode_partials(src: int, cells: list[tuple[str, list[int]]], epoch: int | None = None,
                    position: int | None = None) -> bytes:
    if epoch is None or position is None:
        return orjson.dumps(["p", src, cells])
    return orjson.dumps(["p", src, cells, epoch, position])


def encode_watermark(src: int, watermark_ms: int, epoch: int | None = None) -> bytes:
    if epoch is None:
        return orjson.dumps(["w", src, watermark_ms])
    return orjson.dumps(["w", src, watermark_ms, epoch])


def apply_message(state: MergeRates, raw: bytes) -> None:
    msg = orjson.loads(raw)
    kind = msg[0]
    if kind == "p":
        src = msg[1]
        epoch: int | None = msg[3] if len(msg) > 4 else None
        if not state.admit_epoch(src, epoch):
            state.stale_partials += len(msg[2])
            return
        stamp: Stamp | None = None if epoch is None else (epoch, msg[4])
        for key, counts in msg[2]:
            state.apply_partial(src, key, counts, stamp)
    elif kind == "w":
        src = msg[1]
        if state.admit_epoch(src, msg[3] if len(msg) > 3 else None):
            state.apply_watermark(src, msg[2])
        else:
            state.stale_partials += 1
    else:
        raise ValueError(f"unknown partials record type {kind!r}")
