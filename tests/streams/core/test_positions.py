"""The next-offset check that protects the stages from a consumer that skips or replays."""

from __future__ import annotations

import orjson

from hangwatch.streams.core.merge_rates import MergeRates
from hangwatch.streams.core.partition_rates import PartitionRates
from hangwatch.streams.core.positions import Position, classify
from tests.streams.core.test_rates import GRACE_MS, SIZES, make_events


def test_classify() -> None:
    assert classify(10, 10) == "process"
    assert classify(10, 3) == "replay"
    assert classify(10, 11) == "gap"


def test_position_advances_only_on_the_next_record() -> None:
    pos = Position(5)
    assert [pos.accept(o) for o in (4, 5, 7, 6, 6, 7)] == ["replay", "process", "gap", "process", "replay", "process"]
    assert pos.next_offset == 8 and pos.dirty


def test_without_a_start_the_first_record_sets_it() -> None:
    pos = Position()
    assert pos.accept(42) == "process" and pos.next_offset == 43


def test_partition_position_is_persisted_with_the_watermark_and_restored() -> None:
    st = PartitionRates(0, SIZES, GRACE_MS)
    st.position.next_offset = 0
    for off, e in enumerate(make_events(20, 1)):
        assert st.accept(off) == "process"
        st.process(e, off)
    records = dict(st.state_changes())
    wm = st.watermark_change()
    assert wm is not None
    records[wm[0]] = wm[1]
    st.mark_persisted()
    assert st.watermark_change() is None  # nothing changed since
    st.accept(20)  # an invalid record still moves the position
    assert st.watermark_change() is not None and not st.watermark_moved
    again = PartitionRates.restore(0, SIZES, GRACE_MS, records.items())
    assert again.position.next_offset == 20 and again.watermark_ms == st.watermark_ms
    assert again.accept(19) == "replay" and again.accept(21) == "gap" and again.accept(20) == "process"


def test_partition_state_written_before_positions_existed_restores_without_one() -> None:
    old = {"w": orjson.dumps([1000, 400])}
    st = PartitionRates.restore(0, SIZES, GRACE_MS, old.items())
    assert st.position.next_offset is None and st.watermark_ms == 400


def test_seen_ids_written_one_record_per_event_by_earlier_versions_restore() -> None:
    old = {"s|ev-1": orjson.dumps([1000, 7]), "s|3-4": orjson.dumps([["ev-2", 1100, 3], ["ev-3", 1200, 4]])}
    st = PartitionRates.restore(0, SIZES, GRACE_MS, old.items())
    assert st.seen == {"ev-1": (1000, 7), "ev-2": (1100, 3), "ev-3": (1200, 4)}
    assert st.seen_records == {"s|ev-1": 1000, "s|3-4": 1200}  # both deleted once behind the watermark


def test_merge_position_is_a_separate_record_written_after_the_cells() -> None:
    m = MergeRates(2)
    m.position.next_offset = 0
    assert m.accept(0) == "process"
    key = f"60|{1_800_000_000 // 60 * 60}|all|all"
    m.apply_partial(0, key, [1] * 11)
    cells = dict(m.state_changes())
    assert all(not k.startswith("o") for k in cells)
    pos = m.position_change()
    assert pos == ("o", b"1")
    m.mark_persisted()
    assert m.position_change() is None
    restored = MergeRates.restore(2, [*cells.items(), pos])
    assert restored.position.next_offset == 1 and key in restored.cells
    assert restored.accept(0) == "replay"
