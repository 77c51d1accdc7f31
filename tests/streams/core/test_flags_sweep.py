"""Sweeping borrowers with no recent calls keeps the borrower store bounded without changing
what later calls produce."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hangwatch.streams.core.flags import BorrowerState, flag_id, sweep, too_late
from tests.streams.core.test_flags import DAY, HOUR, RULES, T0, ev, feed, of_rule

LATER = T0 + RULES.retention_ms + 30 * DAY  # a horizon far past everything held


def test_a_borrower_called_recently_is_left_alone() -> None:
    _, states = feed([ev(1, T0)])
    s = states["b1"]
    before = s.to_bytes()
    assert sweep(s, T0 + DAY, RULES) is s and s.to_bytes() == before


def test_a_borrower_never_flagged_is_deleted() -> None:
    _, states = feed([ev(1, T0), ev(2, T0 + HOUR, "completed")])
    assert sweep(states["b1"], LATER, RULES) is None


def test_an_open_episode_survives_and_a_later_completed_call_resolves_it() -> None:
    flags, states = feed([ev(1, T0), ev(2, T0 + HOUR), ev(3, T0 + 2 * HOUR)])
    assert [f["status"] for f in of_rule(flags, "repeated_refusal")] == ["raised"]
    kept = sweep(states["b1"], LATER, RULES)
    assert kept is not None and kept.events == []
    kept = BorrowerState.from_bytes(kept.to_bytes())
    more, _ = feed([ev(9, LATER, "completed")], states={"b1": kept}, offset0=100)
    assert [(f["status"], f["flag_id"]) for f in of_rule(more, "repeated_refusal")] == [
        ("resolved", flag_id("repeated_refusal", "b1", ""))]


def test_a_resolved_borrower_keeps_its_reset_anchor_so_the_next_flag_id_is_new() -> None:
    evs = [ev(1, T0), ev(2, T0 + HOUR), ev(3, T0 + 2 * HOUR), ev(4, T0 + 3 * HOUR, "completed")]
    _, states = feed(evs)
    kept = sweep(states["b1"], LATER, RULES)
    assert kept is not None and kept.events == [] and len(kept.to_bytes()) < 120
    more, _ = feed([ev(10 + i, LATER + i * HOUR) for i in range(3)], states={"b1": kept}, offset0=100)
    raised = of_rule(more, "repeated_refusal")
    assert [(f["status"], f["flag_id"]) for f in raised] == [("raised", flag_id("repeated_refusal", "b1", "e4"))]


def test_too_late_is_measured_against_the_partition_watermark() -> None:
    wm = T0 + 10 * DAY
    assert too_late(wm - RULES.max_lateness_ms - 1, wm, RULES)
    assert not too_late(wm - RULES.max_lateness_ms, wm, RULES)


@settings(max_examples=80, deadline=None)
@given(outcomes=st.lists(st.sampled_from(["hung_up", "refused", "completed", "no_answer", "declined"]),
                         min_size=1, max_size=12),
       gaps_h=st.lists(st.integers(1, 60), min_size=12, max_size=12),
       later=st.lists(st.sampled_from(["hung_up", "refused", "completed"]), min_size=1, max_size=6))
def test_sweeping_between_two_bursts_changes_no_flag(outcomes: list[str], gaps_h: list[int],
                                                      later: list[str]) -> None:
    """Calls, a long silence, more calls: the flags are the same whether or not the borrower
    was swept during the silence."""
    t, first = T0, []
    for i, (o, g) in enumerate(zip(outcomes, gaps_h, strict=False)):
        t += g * HOUR
        first.append(ev(i, t, o))
    second = [ev(100 + i, LATER + i * HOUR, o) for i, o in enumerate(later)]
    _, states = feed(first)
    plain, _ = feed(second, states={"b1": BorrowerState.from_bytes(states["b1"].to_bytes())}, offset0=1000)
    swept = sweep(states["b1"], LATER - 1, RULES)
    after, _ = feed(second, states={} if swept is None else {"b1": swept}, offset0=1000)
    key = [(f["flag_id"], f["status"], [e["event_id"] for e in f["evidence"]]) for f in plain]
    assert [(f["flag_id"], f["status"], [e["event_id"] for e in f["evidence"]]) for f in after] == key
