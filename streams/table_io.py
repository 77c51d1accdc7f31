"""Batched writes to a Faust table's local store and changelog topic.

Why not `table[key] = value`: Faust sends one changelog record per assignment and only from
inside per-event stream iteration. The stages write each changed key once per batch, to the
changelog partition of the source partition that owns it (co-partitioning is what lets Faust
recover the right records on the right worker after a restart or rebalance).

Two stores, one interface (`get`, `put`, `flush`, `scan`), plus `ChangelogWriter` (`put`,
`flush`) for the tables whose state the stages keep themselves:
- `TableWriter`: Faust's memory store (a dict). Writes go to the dict at once: the dict dies
  with the process, so it can never hold a write whose changelog record was lost.
- `RocksTableWriter`: Faust's RocksDB store (rocksdict), which survives a restart. Its writes
  are held in an overlay and reach RocksDB only after their changelog records were delivered,
  so the local database is always a prefix of the changelog. Written earlier, a crash between
  the local write and the changelog send would leave local state that claims work (events
  applied, flags emitted) whose outputs were never sent, and the replayed batch would be
  skipped as already done.
"""

from __future__ import annotations

from typing import Any, Protocol

from faust.stores.rocksdb import Store as RocksStore
from faust.types import TableT
from rocksdict import WriteBatch

from streams.outbox import Outbox

# Faust's RocksDB store keeps the changelog offset it recovered up to under this key.
_FAUST_OFFSET_KEY: bytes = RocksStore.offset_key
_MISSING = object()


def exact_size(value: bytes) -> bytes:
    """orjson.dumps returns bytes whose heap block stays ~4 KB whatever their length; a copy is
    its real size. Worth it for values held for long (a million borrower states: 4,097 -> 72
    bytes each) or in bulk (a batch's 5,000 state records: ~20 MB -> ~1 MB until the flush)."""
    return memoryview(value).tobytes()


class KeyScan(Protocol):
    def next(self, limit: int) -> list[bytes]:
        """Up to `limit` more keys; an empty list when the pass is over."""


class ChangelogWriter:
    """Changelog records only, no local copy: for the tables whose state a stage holds itself
    and rebuilds from the changelog (rates and merge: streams.changelog_restore), where a copy
    in Faust's dict would be written on every batch and never read."""

    def __init__(self, table: TableT) -> None:
        self.table = table
        self._out = Outbox()

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Queue the changelog record (None deletes the key)."""
        self._out.add(self.table.changelog_topic, key, None if value is None else exact_size(value), partition)

    async def flush(self) -> int:
        return await self._out.flush()


class TableWriter(ChangelogWriter):
    """A Faust memory-store table."""

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.table.data.get(key)  # type: ignore[no-any-return]

    def get_many(self, items: list[tuple[int, bytes]]) -> list[bytes | None]:
        """`get` for each (partition, key), in order."""
        data = self.table.data
        return [data.get(key) for _, key in items]

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Update the local store now; queue the changelog record (None deletes the key)."""
        if value is None:
            self.table.data.pop(key, None)
        else:
            value = exact_size(value)
            self.table.data[key] = value
        self._out.add(self.table.changelog_topic, key, value, partition)

    def scan(self, partition: int) -> KeyScan:
        """A pass over the partition's keys, taken in slices (keys added meanwhile may be missed)."""
        prefix = f"{partition}|".encode()
        return _ListScan([k for k in self.table.data if k.startswith(prefix)])


class _ListScan:
    def __init__(self, keys: list[bytes]) -> None:
        self._keys = keys

    def next(self, limit: int) -> list[bytes]:
        out = self._keys[-limit:]
        del self._keys[-limit:]
        return out


class RocksTableWriter(TableWriter):
    """A Faust RocksDB-store table (one RocksDB database per partition, opened by Faust)."""

    def __init__(self, table: TableT) -> None:
        super().__init__(table)
        # partition -> key -> value (None: delete), not yet in RocksDB
        self._overlay: dict[int, dict[bytes, bytes | None]] = {}
        self._inflight: dict[int, dict[bytes, bytes | None]] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        for overlay in (self._overlay, self._inflight):
            held = overlay.get(partition)
            if held is not None:
                v = held.get(key, _MISSING)
                if v is not _MISSING:
                    return v  # type: ignore[return-value]
        return self.table.data._db_for_partition(partition).get(key)  # type: ignore[attr-defined,no-any-return]

    def get_many(self, items: list[tuple[int, bytes]]) -> list[bytes | None]:
        """`get` for each (partition, key), in order: the lookups per partition done once (a
        batch reads thousands of borrowers)."""
        out: list[bytes | None] = []
        append = out.append
        dbs: dict[int, tuple[dict[bytes, bytes | None], dict[bytes, bytes | None], Any]] = {}
        store: Any = self.table.data
        empty: dict[bytes, bytes | None] = {}
        for partition, key in items:
            where = dbs.get(partition)
            if where is None:
                where = dbs[partition] = (self._overlay.get(partition, empty), self._inflight.get(partition, empty),
                                          store._db_for_partition(partition))
            v = where[0].get(key, _MISSING)
            if v is _MISSING:
                v = where[1].get(key, _MISSING)
                if v is _MISSING:
                    v = where[2].get(key)
            append(v)  # type: ignore[arg-type]
        return out

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Queue the changelog record and hold the write until `flush` delivered it."""
        held = self._overlay.get(partition)
        if held is None:
            held = self._overlay[partition] = {}
        if value is not None:
            value = exact_size(value)
        held[key] = value
        self._out.add(self.table.changelog_topic, key, value, partition)

    async def flush(self) -> int:
        """Deliver the changelog records, then write the overlay to RocksDB, one batch per partition.

        A partition whose database is not open any more (revoked) is not written: its changelog
        has these records, and recovery brings them into the database when the partition is
        opened here again. No reference to a database is held across the wait: it would keep
        RocksDB's file lock and make Faust's reopen fail. Nor can a database be closed and
        reopened during the wait: Faust closes and opens them in the rebalance step after
        `on_partitions_revoked`, whose handler (streams.worker) waits for the stage lock that
        the flushing batch holds."""
        # Writes queued while this flush waits belong to the next one; reads still see these.
        self._inflight, self._overlay = self._overlay, {}
        try:
            n = await self._out.flush()
            self.write_delivered(self._inflight)
        finally:
            self._inflight = {}
        return n

    def write_delivered(self, overlay: dict[int, dict[bytes, bytes | None]] | None = None) -> None:
        """Write an overlay to RocksDB (its changelog records were delivered); by default the
        writes queued so far."""
        if overlay is None:
            overlay, self._overlay = self._overlay, {}
        store: Any = self.table.data
        for partition, kv in overlay.items():
            db = store._dbs.get(partition)
            if db is None:
                continue
            batch = WriteBatch(raw_mode=True)
            for k, v in kv.items():
                if v is None:
                    batch.delete(k)
                else:
                    batch.put(k, v)
            db.write(batch)

    def scan(self, partition: int) -> KeyScan:
        return _RocksScan(self, partition)


class _RocksScan:
    """Key order; each slice opens its own iterator and drops it, so no iterator keeps a revoked
    partition's database open between slices."""

    def __init__(self, writer: RocksTableWriter, partition: int) -> None:
        self._writer = writer
        self._partition = partition
        self._after: bytes | None = None
        self._done = False

    def next(self, limit: int) -> list[bytes]:
        if self._done:
            return []
        db = self._writer.table.data._dbs.get(self._partition)  # type: ignore[attr-defined]
        if db is None:
            self._done = True
            return []
        it = db.iter()
        if self._after is None:
            it.seek_to_first()
        else:
            it.seek(self._after)
            if it.valid() and it.key() == self._after:
                it.next()
        keys: list[bytes] = []
        while it.valid() and len(keys) < limit:
            k = it.key()
            if k != _FAUST_OFFSET_KEY:
                keys.append(k)
            it.next()
        del it
        if len(keys) < limit:
            self._done = True
        if keys:
            self._after = keys[-1]
        return keys


def writer_for(table: TableT) -> TableWriter:
    """The writer for the table's store."""
    return RocksTableWriter(table) if isinstance(table.data, RocksStore) else TableWriter(table)

