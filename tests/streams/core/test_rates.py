"""Pure tests of the two-stage rates (partition stage + merge stage) against the batch oracle."""

from __future__ import annotations

import random
import zlib

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from hangwatch.schemas.call_outcome import OUTCOMES, CallOutcome
from hangwatch.streams.core.merge_rates import MergedCell, MergeRates, apply_message, encode_partials, encode_watermark
from hangwatch.streams.core.merge_rates import combine_records as merge_combine
from hangwatch.streams.core.partition_rates import PartitionRates
from hangwatch.streams.core.partition_rates import combine_records as rates_combine
from hangwatch.streams.core.windows import COUNT_FIELDS, dimension_suffixes, dimension_values, window_start_s
from testkit.oracles.rates import oracle_counts

SIZES = (60, 300, 3600)
GRACE_MS = 600_000
T0 = 1_764_201_600_000  # 2025-11-27T00:00:00Z


def ev(i: int, t_ms: int, outcome: str = "hung_up", borrower: str | None = None, branch: str = "br-1",
       agent: str | None = "ag-1", event_id: str | None = None) -> CallOutcome:
    return CallOutcome(
        event_id=event_id or f"e{i}", call_id=f"c{i}", borrower_id=borrower or f"b{i % 7}", loan_id="l1",
        occurred_at_ms=t_ms, campaign="pre_loan_verification", channel="human" if agent else "robot",
        agent_id=agent, branch=branch, outcome=outcome,
        hangup_stage="income_check" if outcome == "hung_up" else None, duration_s=3.0, attempt_no=1,
        pre_notified=bool(i % 2), credit_grade="A", first_time_borrower=None, script_version="v1",
    )


def partition_of(e: CallOutcome, n: int) -> int:
    return zlib.crc32(e.borrower_id.encode()) % n


def run_pipeline(deliveries: list[CallOutcome], n_parts: int = 3, batch: int = 7,
                 crash_after: int | None = None, sizes: tuple[int, ...] = SIZES) -> dict[str, list[int]]:
    """Feed deliveries (arrival order) through partition stages and one merge stage; optionally
    'crash' a partition stage after a batch whose state was NOT persisted and replay it."""
    parts = {p: PartitionRates(p, sizes, GRACE_MS) for p in range(n_parts)}
    persisted: dict[int, dict[str, bytes]] = {p: {} for p in range(n_parts)}
    merge = MergeRates(n_parts)
    by_part: dict[int, list[tuple[int, CallOutcome]]] = {p: [] for p in range(n_parts)}
    for e in deliveries:
        p = partition_of(e, n_parts)
        by_part[p].append((len(by_part[p]), e))
    for p, items in by_part.items():
        i = 0
        batches_done = 0
        while i < len(items):
            chunk = items[i:i + batch]
            st_ = parts[p]
            for off, e in chunk:
                st_.process(e, off)
            apply_message(merge, encode_partials(p, sorted(st_.drain_dirty_cells().items())))
            if crash_after is not None and batches_done == crash_after:
                # state lost: restore from the last persisted records and replay the chunk
                parts[p] = PartitionRates.restore(p, sizes, GRACE_MS, persisted[p].items())
                crash_after = None
                continue
            for k, v in st_.state_changes():
                if v is None:
                    persisted[p].pop(k, None)
                else:
                    persisted[p][k] = v
            wm = st_.watermark_change()
            if wm:
                persisted[p][wm[0]] = wm[1]
            st_.mark_persisted()
            i += batch
            batches_done += 1
    for p, st_ in parts.items():
        st_.advance_idle(T0 + 10 * 86_400_000)
        apply_message(merge, encode_watermark(p, st_.watermark_ms))
    merge.finalize()
    updates = merge.drain_updates(now_ms=T0)
    assert all(u["final"] for u in updates)
    return {u["key"]: [u[f] for f in COUNT_FIELDS] for u in updates}


def as_lists(oracle: dict[str, dict[str, int]]) -> dict[str, list[int]]:
    return {k: [v[f] for f in COUNT_FIELDS] for k, v in oracle.items()}


def make_events(n: int, seed: int) -> list[CallOutcome]:
    rnd = random.Random(seed)
    return [ev(i, T0 + i * 1_700 + rnd.randrange(0, 1000), rnd.choice(OUTCOMES), branch=rnd.choice(["a", "b"]),
               agent=rnd.choice([None, "x", "y"])) for i in range(n)]


def test_window_start_is_epoch_aligned_floor() -> None:
    assert window_start_s(T0 + 59_999, 60) == T0 // 1000
    assert window_start_s(T0 + 60_000, 60) == T0 // 1000 + 60
    assert window_start_s(-1, 60) == -60


def test_ordered_input_equals_oracle() -> None:
    events = make_events(500, 1)
    assert run_pipeline(events) == as_lists(oracle_counts(events, SIZES))


def test_duplicates_count_once() -> None:
    events = make_events(300, 2)
    deliveries = events + events[:50] + events[100:120]
    assert run_pipeline(deliveries) == as_lists(oracle_counts(events, SIZES))


def test_crash_and_replay_is_exact() -> None:
    events = make_events(400, 3)
    assert run_pipeline(events, crash_after=2) == as_lists(oracle_counts(events, SIZES))


def test_late_event_beyond_grace_is_not_counted() -> None:
    st_ = PartitionRates(0, SIZES, GRACE_MS)
    assert st_.process(ev(1, T0 + 3_600_000), 0) == "counted"
    assert st_.process(ev(2, T0), 1) == "late"
    assert st_.process(ev(3, T0 + 3_600_000 - GRACE_MS + 1), 2) == "counted"


def test_expiry_bounds_state() -> None:
    st_ = PartitionRates(0, SIZES, GRACE_MS)
    for i in range(100):
        st_.process(ev(i, T0 + i * 60_000), i)
    st_.advance_idle(T0 + 10 * 3_600_000)
    st_.mark_persisted()
    st_.expire(retention_ms=3_600_000)
    assert st_.seen == {} and st_.cells == {}
    deletes = [k for k, v in st_.state_changes() if v is None]
    assert len(deletes) > 100


def test_merge_finalizes_only_when_all_sources_pass() -> None:
    m = MergeRates(2)
    key = f"60|{T0 // 1000}|all|all"
    m.apply_partial(0, key, [1] * len(COUNT_FIELDS))
    m.apply_watermark(0, T0 + 120_000)
    assert m.finalize() == []
    m.apply_watermark(1, T0 + 60_000)
    assert [k for k, _ in m.finalize()] == [key]
    u = m.drain_updates(now_ms=T0)
    assert u[0]["final"] and u[0]["version"] >= 1 and u[0]["attempts"] == 1
    m.apply_partial(1, key, [2] * len(COUNT_FIELDS))
    u2 = m.drain_updates(now_ms=T0 - 5)  # a clock step back still bumps the version
    assert u2[0]["version"] == u[0]["version"] + 1 and u2[0]["attempts"] == 3


def test_merge_drops_final_cells_once_past_retention_and_after_a_restore() -> None:
    m = MergeRates(1)
    minute0, minute1, hour = (f"60|{T0 // 1000}|all|all", f"60|{T0 // 1000 + 60}|all|all",
                              f"3600|{T0 // 1000}|all|all")
    for key in (minute0, minute1, hour):
        m.apply_partial(0, key, [1] * len(COUNT_FIELDS))
    m.apply_watermark(0, T0 + 120_000 + 599_000)  # both minutes final, the hour open
    assert [k for k, _ in m.finalize()] == [minute0, minute1]
    m.drain_updates(now_ms=T0)
    assert m.expire(retention_ms=600_000) == 1 and set(m.cells) == {minute1, hour}  # minute 0 ended 11 min ago
    assert (f"m|{minute0}", None) in list(m.state_changes())
    m.mark_persisted()
    restored = MergeRates.restore(1, [(f"m|{k}", c.to_bytes()) for k, c in m.cells.items()]
                                  + [("w|0", orjson.dumps(T0 + 120_000 + 599_000))])
    assert restored.expire(retention_ms=600_000) == 0
    restored.apply_watermark(0, T0 + 7_200_000)
    assert [k for k, _ in restored.finalize()] == [hour]
    restored.drain_updates(now_ms=T0)
    assert restored.expire(retention_ms=600_000) == 2 and restored.cells == {}


def test_state_round_trip() -> None:
    st_ = PartitionRates(0, SIZES, GRACE_MS)
    for i, e in enumerate(make_events(50, 4)):
        st_.process(e, i)
    recs = dict(st_.state_changes())
    wm = st_.watermark_change()
    assert wm is not None
    recs[wm[0]] = wm[1]
    st2 = PartitionRates.restore(0, SIZES, GRACE_MS, recs.items())
    persisted = {k: v[:len(COUNT_FIELDS) + 1] for k, v in st_.cells.items()}
    assert {k: v[:len(COUNT_FIELDS) + 1] for k, v in st2.cells.items()} == persisted
    assert st2.seen == st_.seen and st2.watermark_ms == st_.watermark_ms
    assert st2.drain_dirty_cells() == {}  # restored totals: nothing to send until something changes


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 200),
    seed=st.integers(0, 10_000),
    dup_share=st.floats(0, 0.5),
    shuffle_window=st.integers(0, 30),
    batch=st.integers(1, 50),
    parts=st.integers(1, 4),
)
def test_property_stream_equals_oracle(n: int, seed: int, dup_share: float, shuffle_window: int, batch: int,
                                       parts: int) -> None:
    rnd = random.Random(seed)
    events = make_events(n, seed)
    deliveries = list(events)
    deliveries += [rnd.choice(events) for _ in range(int(n * dup_share))]
    # shuffle within a bounded displacement (events are ~1.7 s apart, so 30 positions < grace)
    keyed = sorted(((i + rnd.uniform(0, shuffle_window), e) for i, e in enumerate(deliveries)), key=lambda x: x[0])
    deliveries = [e for _, e in keyed]
    assert run_pipeline(deliveries, n_parts=parts, batch=batch) == as_lists(oracle_counts(events, SIZES))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 150), seed=st.integers(0, 10_000), batch=st.integers(1, 40),
       crash_after=st.one_of(st.none(), st.integers(0, 5)))
def test_property_derived_and_directly_counted_sizes_equal_the_oracle(n: int, seed: int, batch: int,
                                                                     crash_after: int | None) -> None:
    """90 s is not a multiple of 60 s (counted per event); 300 s and 7200 s are (derived)."""
    sizes = (60, 90, 300, 7200)
    events = make_events(n, seed)
    got = run_pipeline(events, batch=batch, crash_after=crash_after, sizes=sizes)
    assert got == as_lists(oracle_counts(events, sizes))


def test_derived_cells_are_not_persisted_and_old_records_of_them_are_deleted() -> None:
    st_ = PartitionRates(0, SIZES, GRACE_MS)
    st_.process(ev(1, T0), 0)
    assert {k.split("|")[1] for k, _ in st_.state_changes() if k.startswith("c|")} == {"60"}
    assert {k.split("|")[0] for k in st_.drain_dirty_cells()} == {"60", "300", "3600"}
    old_record = (f"c|3600|{T0 // 1000}|all|all", b"[1,0,0,0,0,0,0,0,0,0,0,0]")
    restored = PartitionRates.restore(0, SIZES, GRACE_MS, [old_record])
    assert restored.cells == {} and (old_record[0], None) in list(restored.state_changes())


def test_a_smallest_cell_lives_as_long_as_its_largest_derived_window() -> None:
    st_ = PartitionRates(0, SIZES, GRACE_MS)
    st_.process(ev(1, T0), 0)  # minute 0 of the hour
    st_.process(ev(2, T0 + 59 * 60_000), 1)  # minute 59
    st_.advance_idle(T0 + 3_600_000 + GRACE_MS + 30 * 60_000)  # the hour closed 30 min ago
    st_.mark_persisted()
    st_.expire(retention_ms=20 * 60_000)
    # the hour ended 10 minutes past the retention limit: both minutes go together
    assert st_.cells == {} and st_.derived_totals == {}
    st2 = PartitionRates(0, SIZES, GRACE_MS)
    st2.process(ev(1, T0), 0)
    st2.process(ev(2, T0 + 59 * 60_000), 1)
    st2.advance_idle(T0 + 3_600_000 + GRACE_MS)
    st2.drain_dirty_cells()
    st2.mark_persisted()
    st2.expire(retention_ms=20 * 60_000)  # minute 0 ended long ago, but its hour did not
    assert len(st2.cells) == 20 and st2.derived_totals[f"3600|{T0 // 1000}|all|all"][0] == 2


def test_expiry_waits_for_the_watermark_to_be_persisted() -> None:
    st_ = PartitionRates(0, SIZES, GRACE_MS)
    st_.process(ev(1, T0), 0)
    st_.mark_persisted()
    st_.advance_idle(T0 + 3 * 3_600_000)  # every window of the event closed, in memory only
    assert st_.expire() == 0 and st_.cells and st_.seen
    st_.mark_persisted()  # the watermark record went out with this checkpoint
    assert st_.expire() > 0 and st_.cells == {} and st_.seen == {} and st_.derived_totals == {}
    restored = PartitionRates.restore(0, SIZES, GRACE_MS, [("w", orjson.dumps([0, T0 + 3 * 3_600_000, 1, 5]))])
    assert restored.persisted_watermark_ms == restored.watermark_ms == T0 + 3 * 3_600_000


def test_a_cell_goes_once_its_largest_window_closed() -> None:
    st_ = PartitionRates(0, SIZES, GRACE_MS)
    st_.process(ev(1, T0), 0)  # minute 0 of the hour
    st_.advance_idle(T0 + 3_600_000 + GRACE_MS - 1)  # the hour is still open
    st_.mark_persisted()
    assert st_.expire() == 1 and len(st_.cells) == 10 and st_.seen == {}  # its id: behind the watermark
    st_.advance_idle(T0 + 3_600_000 + GRACE_MS)
    st_.mark_persisted()
    assert st_.expire() == 10 and st_.cells == {}


def test_seen_ids_persist_as_one_record_per_batch_and_expire() -> None:
    st_ = PartitionRates(0, SIZES, GRACE_MS)
    for i in range(50):
        st_.process(ev(i, T0 + i * 1000), 100 + i)
    seen_recs = [(k, v) for k, v in st_.state_changes() if k.startswith("s|")]
    assert [k for k, _ in seen_recs] == ["s|100-149"]
    st_.mark_persisted()
    restored = PartitionRates.restore(0, SIZES, GRACE_MS, seen_recs)
    assert restored.seen == st_.seen
    assert restored.process(ev(3, T0 + 3000), 999) == "duplicate"
    st_.advance_idle(T0 + 3_600_000)
    st_.mark_persisted()
    st_.expire(retention_ms=10 * 3_600_000)
    assert ("s|100-149", None) in list(st_.state_changes())


@settings(max_examples=200, deadline=None)
@given(agent=st.one_of(st.none(), st.text(max_size=5)), script=st.one_of(st.none(), st.text(max_size=5)),
       grade=st.one_of(st.none(), st.sampled_from(["A", "B"])), pre=st.booleans(),
       first=st.one_of(st.none(), st.booleans()), stage=st.one_of(st.none(), st.just("greeting")),
       branch=st.text(min_size=1, max_size=5))
def test_cell_key_suffixes_are_the_dimension_value_pairs(agent: str | None, script: str | None, grade: str | None,
                                                         pre: bool, first: bool | None, stage: str | None,
                                                         branch: str) -> None:
    e = CallOutcome(event_id="e", call_id="c", borrower_id="b", loan_id="l", occurred_at_ms=0, campaign="camp",
                    channel="robot", agent_id=agent, branch=branch, outcome="hung_up", hangup_stage=stage,
                    duration_s=1.0, attempt_no=1, pre_notified=pre, credit_grade=grade, first_time_borrower=first,
                    script_version=script)
    assert dimension_suffixes(e) == tuple(f"{d}|{v}" for d, v in dimension_values(e))


def test_merge_drops_snapshots_older_than_the_share_held_and_records_of_a_replaced_owner() -> None:
    """Issue 17: a paused worker that resumes after its partition moved sends stale snapshots."""
    m = MergeRates(2)
    key = f"60|{T0 // 1000}|all|all"
    n = len(COUNT_FIELDS)
    old_owner, new_owner = T0, T0 + 7_000
    apply_message(m, encode_partials(0, [(key, [5] * n)], old_owner, 120))
    apply_message(m, encode_partials(0, [(key, [3] * n)], new_owner, 100))  # replays from an older position
    assert m.cells[key].total == [3] * n, "a newer owner's snapshot wins whatever its position"
    apply_message(m, encode_partials(0, [(key, [5] * n)], old_owner, 130))  # the zombie, late
    apply_message(m, encode_watermark(0, T0 + 900_000, old_owner))
    assert m.cells[key].total == [3] * n and m.src_watermarks == {}
    assert m.stale_partials == 2
    assert not m.apply_partial(0, key, [2] * n, (new_owner, 90)), "an older position of the same owner"
    assert m.apply_partial(0, key, [4] * n, (new_owner, 140)) and m.cells[key].total == [4] * n
    apply_message(m, encode_partials(1, [(key, [1] * n)]))  # unstamped (written before stamps): applied
    assert m.cells[key].total == [5] * n
    recs = dict(m.state_changes())
    assert orjson.loads(recs["e|0"]) == new_owner
    again = MergeRates.restore(2, recs.items())
    assert again.src_epochs == {0: new_owner} and again.cells[key].stamps == {0: (new_owner, 140)}


def test_restores_keep_the_newest_share_not_the_latest_record() -> None:
    """A replaced owner's late changelog write must not roll restored state back."""
    n = len(COUNT_FIELDS)
    newer, stale = MergedCell(), MergedCell()
    for cell, shares, stamps in ((newer, {0: [4] * n, 1: [1] * n}, {0: (2, 50), 1: (1, 9)}),
                                 (stale, {0: [2] * n, 1: [2] * n}, {0: (1, 80), 1: (1, 10)})):
        for src, counts in shares.items():
            cell.set_share(src, counts)
            cell.set_stamp(src, stamps[src])
    newer.version, stale.version, stale.final = 7, 9, True
    joined = MergedCell.from_bytes(merge_combine("m|k", newer.to_bytes(), stale.to_bytes()))
    assert joined.parts == {0: [4] * n, 1: [2] * n} and joined.total == [6] * n
    assert joined.version == 9 and joined.final
    assert merge_combine("o", b"120", b"100") == b"120"

    cell_b, cell_zombie = orjson.dumps([9] * n + [250]), orjson.dumps([4] * n + [199])
    assert rates_combine("c|60|0|all|all", cell_b, cell_zombie) == cell_b
    assert rates_combine("c|60|0|all|all", cell_zombie, cell_b) == cell_b
    wm_b, wm_zombie = orjson.dumps([1, 1, 260, T0 + 1]), orjson.dumps([1, 1, 300, T0])
    assert rates_combine("w", wm_b, wm_zombie) == wm_b
    st_ = PartitionRates(0, SIZES, GRACE_MS)
    st_.epoch = T0 + 5
    assert st_.claim_epoch(T0) == T0 + 6 and st_.claim_epoch(T0 + 100) == T0 + 100
    wm = st_.watermark_change()
    assert wm is not None and PartitionRates.restore(0, SIZES, GRACE_MS, [wm]).epoch == T0 + 100


# One snapshot of a share: (source partition, counts, stamp or None for an unstamped record).
_SHARE = st.tuples(st.integers(0, 5), st.lists(st.integers(0, 5_000), min_size=len(COUNT_FIELDS),
                                                max_size=len(COUNT_FIELDS)),
                   st.one_of(st.none(), st.tuples(st.integers(0, 3), st.integers(0, 100))))


def _model_apply(parts: dict[int, list[int]], stamps: dict[int, tuple[int, int]], src: int, counts: list[int],
                 stamp: tuple[int, int] | None) -> None:
    """The rule as the module docstring states it, on plain dicts."""
    if stamp is not None:
        if src in stamps and stamp < stamps[src]:
            return
        stamps[src] = stamp
    parts[src] = list(counts)


def _model_total(parts: dict[int, list[int]]) -> list[int]:
    return [sum(c[i] for c in parts.values()) for i in range(len(COUNT_FIELDS))]


@settings(max_examples=150, deadline=None)
@given(first=st.lists(_SHARE, max_size=12), second=st.lists(_SHARE, max_size=12))
def test_property_flat_cells_hold_what_the_rule_says(first: list, second: list) -> None:
    """MergedCell keeps its shares flat; what it holds, sums, persists and joins equals the rule
    applied to a dict per source partition."""
    key = f"60|{T0 // 1000}|all|all"
    cells = []
    for ops in (first, second):
        m, parts, stamps = MergeRates(6), {}, {}
        for src, counts, stamp in ops:
            m.apply_partial(src, key, counts, stamp)
            _model_apply(parts, stamps, src, counts, stamp)
        if not ops:
            continue
        cell = m.cells[key]
        assert (cell.parts, cell.stamps, cell.total) == (parts, stamps, _model_total(parts))
        again = MergedCell.from_bytes(cell.to_bytes())
        assert (again.parts, again.stamps, again.total) == (parts, stamps, _model_total(parts))
        cells.append((cell, parts, stamps))
    if len(cells) == 2:
        (a, a_parts, a_stamps), (b, b_parts, b_stamps) = cells
        for src, counts in b_parts.items():  # join: per source, the share with the newer stamp
            theirs, mine = b_stamps.get(src), a_stamps.get(src)
            if src in a_parts and mine is not None and (theirs is None or theirs < mine):
                continue
            if theirs is not None:
                a_stamps[src] = theirs
            a_parts[src] = list(counts)
        a.join(b)
        assert (a.parts, a.stamps, a.total) == (a_parts, a_stamps, _model_total(a_parts))
