"""hangwatch.streams.borrower_store against its real local stores (RocksDB via rocksdict, a dict),
without a broker: partitions opened with `open_local`, deliveries simulated with `write_at` (what
the checkpoint's `write_delivered` does with the offsets the broker returned).
Loading from the changelog (catch-up from the stored offset, rebuild when the changelog is
behind) runs against the real broker in tests/integration/test_changelog_restore.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hangwatch.platform.settings import Settings
from hangwatch.streams.borrower_store import OFFSET_KEY, BorrowerStore, Writes
from hangwatch.streams.changelog_restore import KafkaChangelogSource
from hangwatch.streams.outbox import Outbox

TOPIC = "hangwatch-borrower-state-changelog"


def _store(tmp_path: Path, kind: str) -> BorrowerStore:
    s = Settings()
    s.worker.data_dir = tmp_path
    s.worker.borrower_store = kind  # type: ignore[assignment]
    return BorrowerStore(TOPIC, KafkaChangelogSource(s.kafka), s.worker)  # the source is not read here


@pytest.fixture(params=["rocksdb", "memory"])
def store(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[BorrowerStore]:
    st = _store(tmp_path, request.param)
    yield st
    st.close()


def _stage(st: BorrowerStore) -> tuple[Writes, Outbox]:
    """The checkpoint's first step: the held writes queued as changelog records."""
    out = Outbox(producer=None)  # type: ignore[arg-type]  # nothing is sent
    return st.stage_writes(out), out


def _deliver(st: BorrowerStore, next_offset: int = 1) -> None:
    """What the checkpoint does once the broker acknowledged the changelog records."""
    writes, out = _stage(st)
    assert len(out) > 0
    st.write_at(writes, dict.fromkeys(writes, next_offset))
    st.release(writes)


def _local(st: BorrowerStore, p: int, key: bytes) -> bytes | None:
    return st._dbs[p].get(key)  # type: ignore[no-any-return]


def test_default_is_rocksdb_on_disk_and_memory_is_a_choice(tmp_path: Path) -> None:
    assert Settings().worker.borrower_store == "rocksdb"
    assert _store(tmp_path, "rocksdb").on_disk
    assert not _store(tmp_path / "m", "memory").on_disk


def test_writes_are_visible_at_once_but_reach_the_local_store_only_after_delivery(store: BorrowerStore) -> None:
    store.open_local(1)
    store.put(1, b"1|b-1", b"state-1")
    assert store.get(1, b"1|b-1") == b"state-1"
    writes, out = _stage(store)
    assert store.get(1, b"1|b-1") == b"state-1", "in flight: still readable"
    assert _local(store, 1, b"1|b-1") is None, "written locally before its changelog record was delivered"
    assert out._records == [(TOPIC, b"1|b-1", b"state-1", 1)]
    store.write_at(writes, {1: 8})
    store.release(writes)
    assert _local(store, 1, b"1|b-1") == b"state-1"
    assert _local(store, 1, OFFSET_KEY) == b"8", "the changelog offset the local store reflects"
    store.put(1, b"1|b-1", None)
    assert store.get(1, b"1|b-1") is None, "a queued delete must hide the stored value"
    assert _local(store, 1, b"1|b-1") == b"state-1"
    _deliver(store, 9)
    assert _local(store, 1, b"1|b-1") is None


def test_rocksdb_keeps_state_and_offset_across_a_reopen(tmp_path: Path) -> None:
    st = _store(tmp_path, "rocksdb")
    st.open_local(0)
    st.put(0, b"0|b", b"kept")
    _deliver(st, 42)
    st.close()
    again = _store(tmp_path, "rocksdb")
    again.open_local(0)
    assert again.get(0, b"0|b") == b"kept"
    assert _local(again, 0, OFFSET_KEY) == b"42"
    again.close()


def test_writes_of_a_partition_forgotten_meanwhile_are_not_written(tmp_path: Path) -> None:
    st = _store(tmp_path, "rocksdb")
    st.open_local(2)
    st.put(2, b"2|b-2", b"queued")
    writes, _ = _stage(st)  # a checkpoint waiting for the broker
    st.forget([2])  # revoked
    st.write_at(writes, {2: 1})
    assert 2 not in st._dbs, "the flush must not reopen a revoked partition"
    st.open_local(2)  # nothing holds the old handle: the partition opens again
    assert st.get(2, b"2|b-2") is None
    st.close()


def test_get_many_equals_get_for_stored_queued_inflight_and_missing_keys(store: BorrowerStore) -> None:
    for p in (0, 1):
        store.open_local(p)
    store.put(0, b"0|stored", b"s")
    store.put(1, b"1|stored-then-deleted", b"x")
    _deliver(store)
    store.put(1, b"1|inflight", b"i")
    _stage(store)  # a checkpoint waiting for the broker: in flight
    store.put(1, b"1|stored-then-deleted", None)
    store.put(0, b"0|queued", b"q")
    items = [(0, b"0|stored"), (1, b"1|inflight"), (0, b"0|queued"), (1, b"1|stored-then-deleted"),
             (0, b"0|missing"), (1, b"1|inflight")]
    assert store.get_many(items) == [store.get(p, k) for p, k in items] == [b"s", b"i", b"q", None, None, b"i"]


def test_scan_passes_over_one_partition_in_slices_without_the_offset_key(store: BorrowerStore) -> None:
    for p in (0, 3):
        store.open_local(p)
    for i in range(25):
        store.put(3, f"3|b-{i:03d}".encode(), b"x")
    store.put(0, b"0|other", b"x")
    _deliver(store, 41)
    scan = store.scan(3)
    slices = []
    while keys := scan.next(10):
        slices.append(keys)
    assert [len(s) for s in slices] == [10, 10, 5]
    assert sorted(k for s in slices for k in s) == [f"3|b-{i:03d}".encode() for i in range(25)]
    assert store.scan(5).next(10) == [], "a partition that is not open has nothing to scan"
