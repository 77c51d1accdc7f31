"""streams.table_io against the real stores (Faust's memory store, RocksDB via rocksdict);
the changelog side needs a broker and is covered by tests/integration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hangwatch.settings import Settings
from streams.app import create_pipeline
from streams.table_io import RocksTableWriter, TableWriter, writer_for


def _writer(tmp_path: Path, store: str) -> TableWriter:
    s = Settings()
    s.worker.data_dir = tmp_path
    s.worker.borrower_store = store  # type: ignore[assignment]
    return writer_for(create_pipeline(s).borrowers_table)


@pytest.fixture
def rocks(tmp_path: Path) -> Iterator[RocksTableWriter]:
    w = _writer(tmp_path, "rocksdb")
    assert isinstance(w, RocksTableWriter)
    yield w
    w.table.data._dbs.clear()  # type: ignore[attr-defined]  # let RocksDB close its files


def _deliver(w: RocksTableWriter) -> None:
    """What flush does once the broker acknowledged the changelog records."""
    assert len(w._out) > 0
    w._out._records.clear()
    w.write_delivered()


def test_default_borrower_store_is_rocksdb_and_memory_is_a_choice(tmp_path: Path) -> None:
    assert Settings().worker.borrower_store == "rocksdb"
    assert type(_writer(tmp_path / "m", "memory")) is TableWriter


def test_rocks_writes_are_visible_at_once_but_reach_rocksdb_only_after_delivery(rocks: RocksTableWriter) -> None:
    db = rocks.table.data._db_for_partition(1)  # type: ignore[attr-defined]
    rocks.put(1, b"1|b-1", b"state-1")
    assert rocks.get(1, b"1|b-1") == b"state-1"
    assert db.get(b"1|b-1") is None, "written to RocksDB before its changelog record was delivered"
    assert [r[1:] for r in rocks._out._records] == [(b"1|b-1", b"state-1", 1)]
    _deliver(rocks)
    assert db.get(b"1|b-1") == b"state-1"
    rocks.put(1, b"1|b-1", None)
    assert rocks.get(1, b"1|b-1") is None, "a queued delete must hide the stored value"
    assert db.get(b"1|b-1") == b"state-1"
    _deliver(rocks)
    assert db.get(b"1|b-1") is None


def test_rocks_overlay_of_a_partition_revoked_meanwhile_is_not_written(rocks: RocksTableWriter) -> None:
    store = rocks.table.data
    store._db_for_partition(2)  # type: ignore[attr-defined]
    rocks.put(2, b"2|b-2", b"queued")
    store._dbs.pop(2)  # type: ignore[attr-defined]  # revoked (Faust's revoke_partitions drops it)
    _deliver(rocks)
    assert 2 not in store._dbs, "the flush must not reopen a revoked partition"  # type: ignore[attr-defined]
    # nothing holds the old handle: Faust can open the partition again when it comes back
    assert store._db_for_partition(2).get(b"2|b-2") is None  # type: ignore[attr-defined]


def test_rocks_scan_passes_over_one_partition_in_slices_without_faust_offset_key(rocks: RocksTableWriter) -> None:
    for p in (0, 3):
        rocks.table.data._db_for_partition(p)  # type: ignore[attr-defined]  # opened by Faust at assignment
    for i in range(25):
        rocks.put(3, f"3|b-{i:03d}".encode(), b"x")
    rocks.put(0, b"0|other", b"x")
    _deliver(rocks)
    rocks.table.data.set_persisted_offset(_tp(rocks, 3), 41)  # type: ignore[attr-defined]
    scan = rocks.scan(3)
    slices = []
    while keys := scan.next(10):
        slices.append(keys)
    assert [len(k) for k in slices] == [10, 10, 5]
    assert [k for s in slices for k in s] == [f"3|b-{i:03d}".encode() for i in range(25)]
    assert scan.next(10) == []


def test_memory_scan_passes_over_one_partition(tmp_path: Path) -> None:
    w = _writer(tmp_path, "memory")
    for i in range(7):
        w.put(1, f"1|b-{i}".encode(), b"x")
    w.put(2, b"2|b-x", b"x")
    scan = w.scan(1)
    seen = []
    while keys := scan.next(3):
        seen += keys
    assert sorted(seen) == sorted(f"1|b-{i}".encode() for i in range(7))


def _tp(w: RocksTableWriter, partition: int):  # type: ignore[no-untyped-def]
    from faust.types import TP

    return TP(w.table.changelog_topic.get_topic_name(), partition)


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
def test_get_many_equals_get_for_stored_queued_inflight_and_missing_keys(tmp_path: Path, store: str) -> None:
    w = _writer(tmp_path, store)
    for p in (0, 1):
        if isinstance(w, RocksTableWriter):
            w.table.data._db_for_partition(p)  # type: ignore[attr-defined]  # opened by Faust at assignment
    w.put(0, b"0|stored", b"s")
    w.put(1, b"1|stored-then-deleted", b"x")
    if isinstance(w, RocksTableWriter):
        _deliver(w)
        w.put(1, b"1|inflight", b"i")
        w._inflight, w._overlay = w._overlay, {}  # a flush waiting for the broker
    else:
        w.put(1, b"1|inflight", b"i")
    w.put(1, b"1|stored-then-deleted", None)
    w.put(0, b"0|queued", b"q")
    items = [(0, b"0|stored"), (1, b"1|inflight"), (0, b"0|queued"), (1, b"1|stored-then-deleted"),
             (0, b"0|missing"), (1, b"1|inflight")]
    assert w.get_many(items) == [w.get(p, k) for p, k in items] == [b"s", b"i", b"q", None, None, b"i"]
    if isinstance(w, RocksTableWriter):
        w.table.data._dbs.clear()  # type: ignore[attr-defined]
