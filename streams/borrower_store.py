"""Borrower states per source partition: a local store written through, and restored from, the
borrower-state changelog (hangwatch.streams.changelogs) by this module, not by Faust's table
recovery (hangwatch.streams.changelog_restore says why).

Two kinds of local store, one interface (`load`, `forget`, `get_many`, `put`, `scan`, and the
checkpoint's `stage_writes`, `write_delivered`, `release`):
- RocksDB (default, worker.borrower_store=rocksdb): one database per partition under
  worker.data_dir, which survives a restart. It records the changelog offset it reflects, so
  taking a partition over reads only the records written since (by this worker before a crash,
  or by the partition's previous owner), not the whole changelog.
- memory: a dict per partition, filled from the whole changelog partition when assigned.

Writes are held in an overlay and reach the local store only after their changelog records were
delivered (hangwatch.streams.checkpoint runs the steps), so the local store is always a prefix of
the changelog. Written earlier, a crash
between the local write and the changelog send would leave local state that claims work (events
applied, flags emitted) whose outputs were never sent, and the replayed batch would be skipped
as already done. A worker paused past its session timeout that resumes and commits the batch it
held breaks that order twice: its states land in the changelog after the new owner's newer ones,
and its local store skips the new owner's records. So restores keep the newer state by applied
offset (`newer_state`), and a delivery that does not start where the local store ends marks the
store for a rebuild (`write_at`).
"""

from __future__ import annotations

import functools
import logging
import shutil
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import rocksdict
from rocksdict import Rdict, WriteBatch

from hangwatch.platform.settings import WorkerSettings
from hangwatch.streams import metrics
from hangwatch.streams.core.flags import newer_state
from hangwatch.streams.outbox import Outbox, exact_size
from hangwatch.streams.ports import ChangelogSource

log = logging.getLogger(__name__)
# Where a local database keeps the next changelog offset it does not reflect yet. Not a
# "<partition>|" key, so no borrower key can collide with it; scans skip it.
OFFSET_KEY = b"__hangwatch\0changelog_offset__"
# Stored as the offset when the local store stopped being a prefix of its changelog (`write_at`).
NOT_A_PREFIX = -1
_MISSING = object()
_MB = 1024 * 1024
Writes = dict[int, dict[bytes, bytes | None]]  # partition -> key -> value (None: delete)


class KeyScan(Protocol):
    def next(self, limit: int) -> list[bytes]:
        """Up to `limit` more keys; an empty list when the pass is over."""


class BorrowerStore:
    def __init__(self, topic: str, source: ChangelogSource, worker: WorkerSettings) -> None:
        self.topic_name = topic
        self.source = source
        self.on_disk = worker.borrower_store == "rocksdb"
        self.root = worker.data_dir / "borrower-state"
        self._write_buffer_mb = worker.rocksdb_write_buffer_mb
        # One block cache and one memtable budget for every partition this worker holds (RocksDB
        # memory bounded per worker, not per partition): created once, shared by each database.
        self._cache: Any = None
        self._buffers: Any = None
        if self.on_disk:
            self._cache = rocksdict.Cache(worker.rocksdb_block_cache_mb * _MB)
            self._buffers = rocksdict.WriteBufferManager(worker.rocksdb_memtables_mb * _MB, False)
            _export_memory(self)
        self._dbs: dict[int, Any] = {}  # partition -> Rdict or dict
        # writes not yet in the local store: held since the last commit, and being delivered
        self._overlay: Writes = {}
        self._inflight: Writes = {}

    # ---- partitions -------------------------------------------------------------------------
    async def load(self, partitions: Iterable[int]) -> None:
        """Open the partitions' local stores and bring them up to the changelog's end, all in
        one pass over the changelog (partitions already open are left as they are). Of two
        states of a borrower, the newer by applied offset wins (`newer_state`), not the later
        written: a replaced owner's late writes cannot roll a borrower back."""
        dbs = {p: self._open_trusted(p) for p in sorted(set(partitions) - set(self._dbs))}
        starts = {p: _stored_offset(db) for p, db in dbs.items()}
        read = await self.source.read_since(self.topic_name, starts, newer_state) if starts else {}
        for p, (changes, end) in read.items():
            start = starts[p]
            db = dbs[p]
            if start is not None and start > end:
                # The changelog is behind the local database: the topic was deleted and
                # recreated. The local copy cannot be trusted to match it; rebuild it.
                log.warning("%s[%d]: local borrower store is at offset %d but the changelog ends at %d; "
                            "rebuilding it from the changelog", self.topic_name, p, start, end)
                db = self._rebuilt(p, db)
                start = None
                changes, end = (await self.source.read_since(self.topic_name, {p: None}, newer_state))[p]
            _write(db, _newer_than_held(db, changes) if start is not None else changes, end)
            self._dbs[p] = db
            log.info("partition %d: borrower store caught up with %d changed keys (changelog offset %s -> %d)",
                     p, len(changes), start, end)

    def _open_trusted(self, partition: int) -> Any:
        """The partition's local store, rebuilt empty if a delivery marked it as no longer a
        prefix of the changelog (`write_at`)."""
        db = self._open(partition)
        if _stored_offset(db) == NOT_A_PREFIX:
            log.warning("%s[%d]: another owner wrote the changelog while this worker still wrote its local "
                        "borrower store; rebuilding it from the changelog", self.topic_name, partition)
            db = self._rebuilt(partition, db)
        return db

    def _rebuilt(self, partition: int, db: Any) -> Any:
        self._close(db)
        self._wipe(partition)
        return self._open(partition)

    def open_local(self, partition: int) -> None:
        """Open the partition's local store as it is, without reading the changelog (tools and
        tests that run without a broker)."""
        if partition not in self._dbs:
            self._dbs[partition] = self._open(partition)

    def forget(self, partitions: Iterable[int]) -> None:
        """Close the partitions' local stores (revoked). Held writes are dropped: their changelog
        records, if delivered, are read back when the partition is loaded again."""
        for p in partitions:
            db = self._dbs.pop(p, None)
            if db is not None:
                self._close(db)
            self._overlay.pop(p, None)
            self._inflight.pop(p, None)

    def close(self) -> None:
        self.forget(list(self._dbs))

    # ---- reads and writes ---------------------------------------------------------------------
    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.get_many([(partition, key)])[0]

    def get_many(self, items: list[tuple[int, bytes]]) -> list[bytes | None]:
        """The value of each (partition, key), in order; the partitions must be loaded."""
        out: list[bytes | None] = []
        append = out.append
        where: dict[int, tuple[dict[bytes, bytes | None], dict[bytes, bytes | None], Any]] = {}
        empty: dict[bytes, bytes | None] = {}
        for partition, key in items:
            w = where.get(partition)
            if w is None:
                w = where[partition] = (self._overlay.get(partition, empty), self._inflight.get(partition, empty),
                                        self._dbs[partition])
            v = w[0].get(key, _MISSING)
            if v is _MISSING:
                v = w[1].get(key, _MISSING)
                if v is _MISSING:
                    v = w[2].get(key)
            append(v)  # type: ignore[arg-type]
        return out

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Hold a write (None deletes the key) until the next checkpoint delivers its changelog
        record; reads see it at once."""
        held = self._overlay.get(partition)
        if held is None:
            held = self._overlay[partition] = {}
        held[key] = None if value is None else exact_size(value)

    # ---- the checkpoint's steps (hangwatch.streams.checkpoint) ---------------------------------
    def stage_writes(self, state: Outbox) -> Writes:
        """Queue the changelog records of the held writes into `state`; they stay readable (in
        flight) until `release`. Writes held from now on belong to the next checkpoint."""
        writes, self._overlay = self._overlay, {}
        self._inflight = writes
        for partition, kv in writes.items():
            for key, value in kv.items():
                state.add(self.topic_name, key, value, partition)
        return writes

    def write_delivered(self, writes: Writes, state: Outbox) -> None:
        """Write the delivered writes locally with the changelog offset they bring each store to.

        A partition forgotten (revoked) meanwhile is not written: its changelog has these
        records, and `load` reads them when the partition comes back. Nor can a partition be
        forgotten and loaded again during the delivery: the worker forgets partitions under the
        stage lock that the committing batch holds."""
        self.write_at(writes, state.next_offsets(self.topic_name), state.first_offsets_of(self.topic_name))

    def release(self, writes: Writes) -> None:
        if self._inflight is writes:
            self._inflight = {}

    def write_at(self, writes: Writes, next_offsets: dict[int, int], first_offsets: dict[int, int] | None = None
                 ) -> None:
        """Write `writes` (partition -> changes) with the changelog offset (partition -> next
        offset) that brings each local store to; partitions not open are skipped.

        With `first_offsets` (partition -> offset of the first record of this delivery), a
        delivery that does not start where the local store ends means records in between were
        written by someone else: a new owner of the partition while this worker was paused past
        its session timeout (it resumed and committed the batch it held), or a retried send. The
        store is then no longer a prefix of the changelog: the writes still go in (this worker
        reads its own states until the partition is revoked), but the store is marked to be
        rebuilt from the changelog when it is loaded next."""
        for partition, kv in writes.items():
            db = self._dbs.get(partition)
            nxt = next_offsets.get(partition)
            if db is None or nxt is None:
                continue
            stored = _stored_offset(db)
            first = (first_offsets or {}).get(partition)
            if stored is not None and stored != NOT_A_PREFIX and first is not None and first != stored:
                log.warning("%s[%d]: changelog records %d to %d were written by another owner (this worker was "
                            "replaced while paused) or by a retried send; the local borrower store will be "
                            "rebuilt when the partition is loaded next", self.topic_name, partition, stored,
                            first - 1)
                metrics.BORROWER_STORE_REBUILDS.inc()
                stored = NOT_A_PREFIX
            _write(db, kv, NOT_A_PREFIX if stored == NOT_A_PREFIX else nxt)

    def scan(self, partition: int) -> KeyScan:
        """A pass over the partition's keys, taken in slices (keys added meanwhile may be missed)."""
        db = self._dbs.get(partition)
        if db is None:
            return _ListScan([])
        if isinstance(db, dict):
            return _ListScan([k for k in db if k != OFFSET_KEY])
        return _RocksScan(self, partition)

    def memory_usage(self) -> dict[str, int]:
        """RocksDB's own memory in bytes (all open partitions; zeros for the memory store):
        memtables, index and filter blocks held by table readers outside the block cache, and
        the block cache (in use, and pinned by readers)."""
        out = {"memtables": 0, "table_readers": 0, "block_cache": 0, "block_cache_pinned": 0}
        for db in list(self._dbs.values()):
            if isinstance(db, dict):
                continue
            out["memtables"] += db.property_int_value("rocksdb.size-all-mem-tables") or 0
            out["table_readers"] += db.property_int_value("rocksdb.estimate-table-readers-mem") or 0
        if self._cache is not None:  # one cache for all partitions: counted once
            out["block_cache"] = self._cache.get_usage()
            out["block_cache_pinned"] = self._cache.get_pinned_usage()
        return out

    # ---- local stores -------------------------------------------------------------------------
    def _path(self, partition: int) -> Path:
        return self.root / f"p{partition}"

    def _open(self, partition: int) -> Any:
        if not self.on_disk:
            return {}
        path = self._path(partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = Rdict(str(path), options=_rocks_options(self._write_buffer_mb, self._cache, self._buffers),
                   access_type=rocksdict.AccessType.read_write())
        db.set_read_options(rocksdict.ReadOptions())
        return db

    @staticmethod
    def _close(db: Any) -> None:
        if isinstance(db, Rdict):
            db.close()

    def _wipe(self, partition: int) -> None:
        if self.on_disk:
            shutil.rmtree(self._path(partition), ignore_errors=True)


def _rocks_options(write_buffer_mb: int, cache: rocksdict.Cache,
                  buffers: rocksdict.WriteBufferManager) -> rocksdict.Options:
    """RocksDB memory bounded per worker whatever the number of borrowers (sizes from settings:
    worker.rocksdb_*): every partition's database shares `cache` (data, index and filter
    blocks) and `buffers` (the memtables' budget).

    Index and filter blocks grow with the number of keys (~2.5 MB per million borrowers here);
    held by the table readers outside any cache they grew without bound. In the cache they are
    charged to it: partitioned (a small top-level index per file, pinned, and partitions loaded
    as lookups need them) and cached with high priority, so data blocks are evicted before
    them; L0's are pinned (the newest borrowers, looked up most)."""
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_max_open_files(943_719)  # Faust's RocksDB default, which earlier versions ran with
    opts.set_write_buffer_size(write_buffer_mb * _MB)
    opts.set_max_write_buffer_number(2)
    opts.set_write_buffer_manager(buffers)
    opts.set_target_file_size_base(16 * _MB)
    table = rocksdict.BlockBasedOptions()
    table.set_bloom_filter(10, False)  # bits per key: most lookups are for borrowers seen before
    table.set_block_cache(cache)
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    table.set_index_type(rocksdict.BlockBasedIndexType.two_level_index_search())
    table.set_partition_filters(True)
    table.set_pin_top_level_index_and_filter(True)
    opts.set_block_based_table_factory(table)
    return opts


def _export_memory(store: BorrowerStore) -> None:
    """hangwatch_borrower_store_memory_bytes reads this store's memory_usage() when scraped (in
    the exporter's thread: an error, as a partition closing meanwhile, reads as 0)."""
    ref = weakref.ref(store)

    def read(kind: str) -> float:
        s = ref()
        try:
            return float(s.memory_usage()[kind]) if s is not None else 0.0
        except Exception:
            return 0.0

    for kind in ("memtables", "table_readers", "block_cache", "block_cache_pinned"):
        metrics.BORROWER_STORE_MEMORY.labels(kind).set_function(functools.partial(read, kind))


def _newer_than_held(db: Any, changes: dict[bytes, bytes | None]) -> dict[bytes, bytes | None]:
    """`changes` read from the changelog, each state kept only if it is not older than the one
    the local store holds (a replaced owner's late write after this store's own)."""
    out = dict(changes)
    for key, value in changes.items():
        if value is not None and (held := db.get(key)) is not None:
            out[key] = newer_state("", held, value)
    return out


def _stored_offset(db: Any) -> int | None:
    raw = db.get(OFFSET_KEY)
    return int(raw) if raw is not None else None


def _write(db: Any, kv: dict[bytes, bytes | None], next_offset: int) -> None:
    """Apply changes (None deletes) and the offset they bring the store to, atomically."""
    if isinstance(db, dict):
        for k, v in kv.items():
            if v is None:
                db.pop(k, None)
            else:
                db[k] = v
        db[OFFSET_KEY] = str(next_offset).encode()
        return
    batch = WriteBatch(raw_mode=True)
    for k, v in kv.items():
        if v is None:
            batch.delete(k)
        else:
            batch.put(k, v)
    batch.put(OFFSET_KEY, str(next_offset).encode())
    db.write(batch)


class _ListScan:
    def __init__(self, keys: list[bytes]) -> None:
        self._keys = keys

    def next(self, limit: int) -> list[bytes]:
        out = self._keys[-limit:]
        del self._keys[-limit:]
        return out


class _RocksScan:
    """Key order; each slice opens its own iterator and drops it, so no iterator keeps a
    forgotten partition's database open between slices."""

    def __init__(self, store: BorrowerStore, partition: int) -> None:
        self._store = store
        self._partition = partition
        self._after: bytes | None = None
        self._done = False

    def next(self, limit: int) -> list[bytes]:
        if self._done:
            return []
        db = self._store._dbs.get(self._partition)
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
            if k != OFFSET_KEY:
                keys.append(k)
            it.next()
        del it
        if len(keys) < limit:
            self._done = True
        if keys:
            self._after = keys[-1]
        return keys
