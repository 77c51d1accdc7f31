"""The merge stage of the rates: exact global counts per cell from per-partition snapshots.

Input (topic hangwatch-rate-partials, keyed by dimension|value so that every window of one
dimension value lives on one merge partition, which the spike baseline needs):
- a partial: (source partition, cell key, counts snapshot) -> replaces that partition's share;
- a watermark: (source partition, watermark ms) -> monotonic max per source partition.

A cell is final once the global watermark (the minimum over ALL source partitions) has passed
its window end: no source partition can count another event for it. Because a partition sends
its partials before the watermark that covers them, on one ordered Kafka partition, a final
cell already holds every share. Output: one RateUpdate per changed cell per batch, with a
version that increases per key and `final` set once closed.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import Final

import orjson

from hangwatch.schemas.records import ALERT_DIMENSIONS, RateUpdate
from hangwatch.streams.core.partition_rates import MIN_TIME
from hangwatch.streams.core.positions import Delivery, Position
from hangwatch.streams.core.windows import N_COUNTS, parse_cell_key, rate_update

CELL_PREFIX: Final = "m|"
SRC_WM_PREFIX: Final = "w|"
POSITION_KEY: Final = "o"


class MergedCell:
    __slots__ = ("final", "parts", "total", "version")

    def __init__(self) -> None:
        self.parts: dict[int, list[int]] = {}
        self.total: list[int] = [0] * N_COUNTS
        self.version = 0
        self.final = False

    def to_bytes(self) -> bytes:
        return orjson.dumps({"p": {str(k): v for k, v in self.parts.items()}, "v": self.version, "f": self.final})

    @classmethod
    def from_bytes(cls, raw: bytes) -> MergedCell:
        d = orjson.loads(raw)
        c = cls()
        c.parts = {int(k): v for k, v in d["p"].items()}
        c.version = d["v"]
        c.final = d["f"]
        c.recompute()
        return c

    def recompute(self) -> None:
        total = [0] * N_COUNTS
        for counts in self.parts.values():
            for i, n in enumerate(counts):
                total[i] += n
        self.total = total


class MergeRates:
    """State of one partition of the partials topic."""

    def __init__(self, n_sources: int) -> None:
        self.n_sources = n_sources
        self.cells: dict[str, MergedCell] = {}
        self.src_watermarks: dict[int, int] = {}
        self._dirty: set[str] = set()
        self._dirty_wm: set[int] = set()
        self._deleted: set[str] = set()
        self.ignored_partials = 0
        # (window end s, key) of every cell not final yet: finalize() pops the closed ones
        # instead of scanning all cells on every batch (small batches at low rates).
        self._open: list[tuple[int, str]] = []
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

    def apply_partial(self, src: int, key: str, counts: list[int]) -> bool:
        """Apply one partition's snapshot of a cell. Returns False (and changes nothing) for a
        cell that is already closed and expired from state: its other shares are gone, so the
        result would be wrong; `hangwatch reconcile` corrects such windows from the raw store."""
        cell = self.cells.get(key)
        if cell is None:
            size, start, _, _ = parse_cell_key(key)
            if (start + size) * 1000 <= self.global_watermark_ms():
                self.ignored_partials += 1
                return False
            cell = self.cells[key] = MergedCell()
            heapq.heappush(self._open, (start + size, key))
        if cell.parts.get(src) != counts:
            cell.parts[src] = list(counts)
            cell.recompute()
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
            _, key = heapq.heappop(open_cells)
            cell = self.cells.get(key)
            if cell is None or cell.final:
                continue
            cell.final = True
            self._dirty.add(key)
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
        old = [k for k, c in self.cells.items() if c.final and sum(parse_cell_key(k)[:2]) <= limit_s]
        for k in old:
            del self.cells[k]
            self._dirty.discard(k)
            self._deleted.add(CELL_PREFIX + k)
        return len(old)

    def state_changes(self) -> Iterator[tuple[str, bytes | None]]:
        for k in self._dirty:
            cell = self.cells.get(k)
            if cell is not None:
                yield CELL_PREFIX + k, cell.to_bytes()
        for src in self._dirty_wm:
            yield f"{SRC_WM_PREFIX}{src}", orjson.dumps(self.src_watermarks[src])
        for k in self._deleted:
            yield k, None

    def mark_persisted(self) -> None:
        self._dirty.clear()
        self._dirty_wm.clear()
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
                if not cell.final:
                    size, start, _, _ = parse_cell_key(cell_key)
                    st._open.append((start + size, cell_key))
            elif key.startswith(SRC_WM_PREFIX):
                st.src_watermarks[int(key[len(SRC_WM_PREFIX):])] = orjson.loads(value)
            elif key == POSITION_KEY:
                st.position.next_offset = orjson.loads(value)
        heapq.heapify(st._open)
        return st


def is_alert_cell(key: str, alert_window_s: int) -> bool:
    size, _, dim, _ = parse_cell_key(key)
    return size == alert_window_s and dim in ALERT_DIMENSIONS


# Partials wire format (internal topic): compact JSON arrays, decoded with one orjson.loads.
#   ["p", src_partition, [[cell_key, [counts...]], ...]]
#   ["w", src_partition, watermark_ms]
def encode_partials(src: int, cells: list[tuple[str, list[int]]]) -> bytes:
    return orjson.dumps(["p", src, cells])


def encode_watermark(src: int, watermark_ms: int) -> bytes:
    return orjson.dumps(["w", src, watermark_ms])


def apply_message(state: MergeRates, raw: bytes) -> None:
    msg = orjson.loads(raw)
    if msg[0] == "p":
        src = msg[1]
        for key, counts in msg[2]:
            state.apply_partial(src, key, counts)
    elif msg[0] == "w":
        state.apply_watermark(msg[1], msg[2])
    else:
        raise ValueError(f"unknown partials record type {msg[0]!r}")
