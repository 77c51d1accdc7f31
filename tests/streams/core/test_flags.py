"""Borrower flags: rule edges, idempotence, bounded state, and the stream against the batch oracle."""

from __future__ import annotations

import hashlib
import random
from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.schemas.records import BorrowerFlag
from hangwatch.streams.core.flags import BorrowerState, applied_offset_of, apply_events, flag_id, newer_state
from hangwatch.streams.core.rules_config import default_rules, rules_from_dict
from testkit.oracles.flags import OracleFlag, oracle_flag_records, oracle_flags

SH = ZoneInfo("Asia/Shanghai")
RULES = default_rules()
DAY = 86_400_000
HOUR = 3_600_000
MIN = 60_000
NOW = 1_800_000_000_000
STAGE_OF = {"hung_up": "income_check", "refused": "collateral_check"}


def local(s: str) -> int:
    """Epoch ms of a Shanghai wall-clock time such as '2026-11-27 21:40:00.000'."""
    return int(datetime.fromisoformat(s).replace(tzinfo=SH).timestamp() * 1000)


T0 = local("2026-11-23 10:00")  # a Monday, mid-morning local time (outside quiet hours)


def ev(i: int | str, t_ms: int, outcome: str = "hung_up", borrower: str = "b1", channel: str = "human",
       stage: str | None = None, pre_notified: bool = False) -> CallOutcome:
    return CallOutcome(
        event_id=f"e{i}", call_id=f"c{i}", borrower_id=borrower, loan_id=f"loan-{borrower}", occurred_at_ms=t_ms,
        campaign="post_loan_review", channel=channel, agent_id="ag-7" if channel == "human" else None,
        branch="br-1", outcome=outcome, hangup_stage=stage or STAGE_OF.get(outcome), duration_s=4.0, attempt_no=1,
        pre_notified=pre_notified, credit_grade="A", first_time_borrower=True, script_version="v2",
    )


def feed(events: list[CallOutcome], rules=RULES, batch: int = 1, persist: bool = True,
         states: dict[str, BorrowerState] | None = None, offset0: int = 0) -> tuple[list[BorrowerFlag], dict]:
    """Deliver events (in the given order) per borrower in batches with increasing offsets."""
    states = {} if states is None else states
    flags: list[BorrowerFlag] = []
    for k in range(0, len(events), batch):
        chunk = events[k:k + batch]
        by_b: dict[str, list] = {}
        for n, e in enumerate(chunk):
            by_b.setdefault(e.borrower_id, []).append((e, offset0 + k + n))
        for b, items in by_b.items():
            s = states.get(b)
            if persist and s is not None:
                s = BorrowerState.from_bytes(s.to_bytes())
            s, out = apply_events(s, b, items, rules, NOW)
            states[b] = s
            flags += out
    return flags, states


def pairs(flags: list[BorrowerFlag]) -> list[tuple[str, str]]:
    return [(f["flag_id"], f["status"]) for f in flags]


def of_rule(flags: list[BorrowerFlag], rule_id: str) -> list[BorrowerFlag]:
    return [f for f in flags if f["rule_id"] == rule_id]


# --- repeated_refusal -------------------------------------------------------------------------

def test_three_negatives_within_seven_days_raise_once() -> None:
    evs = [ev(1, T0, "hung_up"), ev(2, T0 + 3 * DAY, "declined"), ev(3, T0 + 7 * DAY - 1, "hung_up"),
           ev(4, T0 + 7 * DAY + HOUR, "completed")]
    flags = of_rule(feed(evs)[0], "repeated_refusal")
    assert [f["status"] for f in flags] == ["raised", "resolved"]
    raised = flags[0]
    assert raised["flag_id"] == flag_id("repeated_refusal", "b1", "") == flags[1]["flag_id"]
    assert raised["severity"] == "medium" and flags[1]["severity"] == "low"
    assert [e["event_id"] for e in raised["evidence"]] == ["e1", "e2", "e3"]
    assert raised["first_event_at"] == "2026-11-23T02:00:00.000Z"
    assert raised["last_event_at"] == "2026-11-30T01:59:59.999Z"
    assert raised["loan_id"] == "loan-b1" and raised["rule_version"] == 1
    assert raised["explanation"] == ("3 negative outcomes in 7 days: hung up at income check twice, declined once; "
                                     "last call 2026-11-30 09:59 +08:00")
    assert raised["emitted_at"] == "2027-01-15T08:00:00.000Z"
    assert [e["event_id"] for e in flags[1]["evidence"]] == ["e4"]


def test_span_of_seven_days_or_more_does_not_raise() -> None:
    exactly_7 = [ev(1, T0), ev(2, T0 + 3 * DAY), ev(3, T0 + 7 * DAY)]
    over_8 = [ev(1, T0), ev(2, T0 + 4 * DAY), ev(3, T0 + 8 * DAY)]
    assert of_rule(feed(exactly_7)[0], "repeated_refusal") == []
    assert of_rule(feed(over_8)[0], "repeated_refusal") == []
    # ... but the third and a fourth within 7 days of each other and the second do raise.
    flags = of_rule(feed([*over_8, ev(4, T0 + 8 * DAY + HOUR)])[0], "repeated_refusal")
    assert [[e["event_id"] for e in f["evidence"]] for f in flags] == [["e2", "e3", "e4"]]


def test_escalates_at_five_with_the_same_flag_id() -> None:
    evs = [ev(i, T0 + i * HOUR, "refused" if i % 2 else "declined") for i in range(1, 7)]
    flags = of_rule(feed(evs)[0], "repeated_refusal")
    assert [(f["status"], f["severity"], len(f["evidence"])) for f in flags] == [("raised", "medium", 3),
                                                                                ("escalated", "high", 5)]
    assert flags[0]["flag_id"] == flags[1]["flag_id"]
    assert flags[1]["explanation"].startswith("5 negative outcomes in 7 days: refused at collateral check 3 times, "
                                              "declined twice; last call")


def test_new_episode_needs_three_new_negatives_after_the_resolving_call() -> None:
    evs = [ev(1, T0), ev(2, T0 + HOUR), ev(3, T0 + 2 * HOUR), ev(4, T0 + 3 * HOUR, "completed"),
           ev(5, T0 + 4 * HOUR), ev(6, T0 + 5 * HOUR)]
    flags, states = feed(evs)
    rr = of_rule(flags, "repeated_refusal")
    assert [f["status"] for f in rr] == ["raised", "resolved"]  # 5 negatives in 7 days, but only 2 after e4
    more, _ = feed([ev(7, T0 + 6 * HOUR)], states=states, offset0=100)
    assert [(f["status"], f["flag_id"]) for f in more] == [("raised", flag_id("repeated_refusal", "b1", "e4"))]
    assert [e["event_id"] for e in more[0]["evidence"]] == ["e5", "e6", "e7"]
    assert more[0]["flag_id"] != rr[0]["flag_id"]


def test_completed_call_without_open_flag_changes_nothing() -> None:
    evs = [ev(1, T0), ev(2, T0 + HOUR), ev(3, T0 + 2 * HOUR, "completed"), ev(4, T0 + 3 * HOUR)]
    rr = of_rule(feed(evs)[0], "repeated_refusal")
    assert [(f["status"], [e["event_id"] for e in f["evidence"]]) for f in rr] == [("raised", ["e1", "e2", "e4"])]


def test_other_outcomes_are_neither_negative_nor_resolving() -> None:
    evs = [ev(1, T0), ev(2, T0 + HOUR), ev(3, T0 + 2 * HOUR, "wrong_party"), ev(4, T0 + 3 * HOUR, "no_answer"),
           ev(5, T0 + 4 * HOUR)]
    rr = of_rule(feed(evs)[0], "repeated_refusal")
    assert [(f["status"], len(f["evidence"])) for f in rr] == [("raised", 3)]


# --- compliance -------------------------------------------------------------------------------

def test_frequency_six_unanswered_in_a_local_day_is_fine_seven_flags() -> None:
    day = [ev(i, local("2026-11-24 09:00") + i * HOUR, ("no_answer", "busy", "voicemail")[i % 3]) for i in range(6)]
    assert of_rule(feed(day)[0], "compliance_frequency") == []
    flags = of_rule(feed([*day, ev(6, local("2026-11-24 20:00"), "declined")])[0], "compliance_frequency")
    assert len(flags) == 1
    f = flags[0]
    assert f["flag_id"] == flag_id("compliance_frequency", "b1", "2026-11-24") and f["severity"] == "high"
    assert len(f["evidence"]) == 7
    assert f["explanation"] == ("7 unanswered attempts on local day 2026-11-24 (Asia/Shanghai), above the limit of 6 "
                                "per day: no answer twice, busy twice, voicemail twice, declined once; "
                                "limit passed at 20:00")


def test_frequency_counts_the_local_day_across_the_utc_day_boundary() -> None:
    # Local day 2026-11-24 is 2026-11-23T16:00Z .. 2026-11-24T16:00Z: 3 calls on the UTC 23rd, 4 on the 24th.
    split = [ev(i, local("2026-11-24 00:30") + i * 10 * MIN, "no_answer") for i in range(3)]  # UTC 23rd
    split += [ev(i, local("2026-11-24 10:00") + i * HOUR, "busy") for i in range(3, 7)]  # UTC 24th
    assert {format_day_utc(e.occurred_at_ms) for e in split} == {"2026-11-23", "2026-11-24"}
    flags = of_rule(feed(split)[0], "compliance_frequency")
    assert [f["flag_id"] for f in flags] == [flag_id("compliance_frequency", "b1", "2026-11-24")]
    # Seven on one UTC day but split over two local days: no flag.
    across = [ev(i, local("2026-11-24 23:00") + i * 10 * MIN, "no_answer") for i in range(7)]  # 23:00 .. 00:00
    assert {format_day_utc(e.occurred_at_ms) for e in across} == {"2026-11-24"}
    assert of_rule(feed(across)[0], "compliance_frequency") == []


def format_day_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo("UTC")).date().isoformat()


def test_quiet_hours_boundaries() -> None:
    cases = {
        "2026-11-24 21:59:59.999": False,
        "2026-11-25 22:00:00.000": True,
        "2026-11-27 07:59:59.999": True,
        "2026-11-28 08:00:00.000": False,
        "2026-11-29 00:00:00.000": True,
        "2026-11-30 12:00:00.000": False,
    }
    for n, (when, quiet) in enumerate(cases.items()):
        flags = of_rule(feed([ev(n, local(when), "completed")])[0], "compliance_quiet_hours")
        assert bool(flags) is quiet, when
        if quiet:
            assert flags[0]["flag_id"] == flag_id("compliance_quiet_hours", "b1", when[:10])
            assert flags[0]["severity"] == "high"
    f = of_rule(feed([ev(9, local("2026-11-25 22:15"), "declined", channel="robot")])[0], "compliance_quiet_hours")[0]
    assert f["explanation"] == ("robot call at 2026-11-25 22:15 +08:00 (Asia/Shanghai) falls in the quiet hours "
                                "22:00-08:00: declined")


def test_compliance_rules_raise_at_most_one_flag_per_borrower_per_local_day() -> None:
    evs = [ev(i, local("2026-11-24 22:00") + i * 5 * MIN, "no_answer") for i in range(12)]  # 22:00 .. 22:55
    evs += [ev(100 + i, local("2026-11-25 22:00") + i * 5 * MIN, "busy") for i in range(8)]
    evs += [ev(200, local("2026-11-24 23:30"), "no_answer", borrower="b2")]
    flags, _ = feed(evs, batch=3)
    got = sorted((f["borrower_id"], f["rule_id"], f["flag_id"]) for f in flags if f["rule_id"].startswith("compl"))
    assert got == sorted([
        ("b1", "compliance_frequency", flag_id("compliance_frequency", "b1", "2026-11-24")),
        ("b1", "compliance_frequency", flag_id("compliance_frequency", "b1", "2026-11-25")),
        ("b1", "compliance_quiet_hours", flag_id("compliance_quiet_hours", "b1", "2026-11-24")),
        ("b1", "compliance_quiet_hours", flag_id("compliance_quiet_hours", "b1", "2026-11-25")),
        ("b2", "compliance_quiet_hours", flag_id("compliance_quiet_hours", "b2", "2026-11-24")),
    ])


def test_disabled_rules_are_not_evaluated() -> None:
    doc = {"rules": [{"id": "compliance_quiet_hours", "version": 1, "enabled": False},
                     {"id": "repeated_refusal", "version": 2}]}
    rules = rules_from_dict(doc)
    flags, _ = feed([ev(i, local("2026-11-24 23:00") + i * MIN) for i in range(3)], rules=rules)
    assert [(f["rule_id"], f["rule_version"]) for f in flags] == [("repeated_refusal", 2)]


# --- idempotence, state ------------------------------------------------------------------------

def test_duplicates_and_replays_are_idempotent() -> None:
    evs = [ev(i, T0 + i * HOUR) for i in range(5)]
    _, states = feed(evs)
    before = states["b1"].to_bytes()
    # Duplicate delivery: the same events at new offsets.
    again, _ = feed(evs, states=states, offset0=1000)
    assert again == []
    assert states["b1"].event_ids == [e.event_id for e in evs]
    # Replay after a crash: offsets already applied are skipped even for unseen event ids.
    s = BorrowerState.from_bytes(before)
    s, out = apply_events(s, "b1", [(ev(99, T0 + 9 * HOUR), 3)], RULES, NOW)
    assert out == [] and s.to_bytes() == before
    # A duplicate within one batch counts once: two distinct negatives do not raise.
    s, out = apply_events(None, "b1", [(evs[0], 0), (evs[0], 1), (evs[1], 2), (evs[1], 3)], RULES, NOW)
    assert out == [] and len(s.events) == 2 and s.applied_offset == 3


def test_crash_replay_emits_the_same_records() -> None:
    evs = [ev(i, T0 + i * HOUR) for i in range(6)]
    _, states = feed(evs[:2])
    saved = states["b1"].to_bytes()
    batch = [(e, 10 + n) for n, e in enumerate(evs[2:])]
    _, first = apply_events(BorrowerState.from_bytes(saved), "b1", batch, RULES, NOW)
    _, second = apply_events(BorrowerState.from_bytes(saved), "b1", batch, RULES, NOW)  # state not saved: replay
    assert first == second and pairs(first) == [(flag_id("repeated_refusal", "b1", ""), "raised"),
                                                (flag_id("repeated_refusal", "b1", ""), "escalated")]


def test_state_round_trips_through_bytes() -> None:
    evs = [ev(i, T0 + i * 7 * HOUR, ("hung_up", "completed", "declined", "no_answer")[i % 4], stage=None)
           for i in range(20)]
    _, states = feed(evs, persist=False)
    s = states["b1"]
    assert s.rr and s.emitted
    b = s.to_bytes()
    s2 = BorrowerState.from_bytes(b)
    assert s2 == s and s2.to_bytes() == b and s2.applied_offset == s.applied_offset == 19
    nxt = [(ev(50 + i, T0 + 150 * HOUR + i * HOUR), 100 + i) for i in range(4)]
    a, out_a = apply_events(s, "b1", nxt, RULES, NOW)
    c, out_c = apply_events(s2, "b1", nxt, RULES, NOW)
    assert out_a == out_c and a == c


def test_state_stays_bounded() -> None:
    # 60 days, 4 calls a day, a flag episode every few days.
    rng = random.Random(7)
    evs = []
    for d in range(60):
        for k in range(4):
            out = rng.choice(["hung_up", "declined", "completed", "no_answer", "busy"])
            evs.append(ev(d * 10 + k, T0 + d * DAY + k * 2 * HOUR, out))
    flags, states = feed(evs, batch=5)
    s = states["b1"]
    assert len(flags) > 10
    newest = s.events[-1][0]
    assert s.events[0][0] >= newest - RULES.retention_ms
    assert len(s.events) <= 4 * 9
    assert sum(len(m) for m in s.emitted.values()) <= 12
    assert all(len(log) <= 8 for _, log in s.rr.values())
    assert len(s.to_bytes()) < 6000


def test_flag_ids_are_deterministic() -> None:
    assert flag_id("repeated_refusal", "b1", "e4") == hashlib.sha1(b"repeated_refusal|b1|e4").hexdigest()
    evs = [ev(i, T0 + i * 5 * HOUR, ("hung_up", "no_answer", "completed", "declined")[i % 4]) for i in range(30)]
    a, _ = feed(evs, batch=1)
    b, _ = feed(evs, batch=7)
    assert pairs(a) == pairs(b) and a
    assert [f["flag_id"] for f in a] == [f["flag_id"] for f in b]


def test_late_event_in_order_window_gives_the_same_flag() -> None:
    # e0 arrives minutes late, after e1..e3 already raised the flag: no second flag for the episode.
    evs = [ev(0, T0), ev(1, T0 + 2 * MIN), ev(2, T0 + 4 * MIN), ev(3, T0 + 6 * MIN)]
    arrival = [evs[1], evs[2], evs[3], evs[0]]
    flags, _ = feed(arrival)
    assert pairs(flags) == oracle_flags(evs, RULES) == [(flag_id("repeated_refusal", "b1", ""), "raised")]


def test_known_divergence_late_resolving_call() -> None:
    # Ordered: N N N C N N N. The C call arrives after the last three negatives: the stream has
    # escalated the first episode meanwhile; afterwards it converges on the batch answer.
    t = [T0 + i * MIN for i in range(7)]
    evs = [ev(0, t[0]), ev(1, t[1]), ev(2, t[2]), ev(3, t[3], "completed"), ev(4, t[4]), ev(5, t[5]), ev(6, t[6])]
    flags, _ = feed([*evs[:3], *evs[4:], evs[3]])
    expected = oracle_flags(evs, RULES)
    got = pairs(flags)
    assert set(expected) < set(got)
    assert set(got) - set(expected) == {(flag_id("repeated_refusal", "b1", ""), "escalated")}
    assert len(got) == len(set(got))


def test_too_late_events_are_ignored() -> None:
    evs = [ev(1, T0 + 10 * DAY), ev(2, T0 + 10 * DAY + HOUR)]
    flags, states = feed([*evs, ev(3, T0 + 8 * DAY)])  # 2 days behind the newest: beyond max lateness (1 day)
    assert flags == [] and states["b1"].event_ids == ["e1", "e2"]
    flags, states = feed([*evs, ev(3, T0 + 9 * DAY + 2 * HOUR)])  # within a day: evaluated
    assert pairs(flags) == [(flag_id("repeated_refusal", "b1", ""), "raised")]


def test_wrong_borrower_is_an_error() -> None:
    try:
        apply_events(None, "b1", [(ev(1, T0, borrower="b2"), 0)], RULES, NOW)
    except ValueError as e:
        assert "b2" in str(e)
    else:
        raise AssertionError("expected ValueError")


# --- property tests against the oracle ------------------------------------------------------------

SMALL = rules_from_dict({
    "timezone": "America/New_York",  # a DST zone: local days of 23 and 25 hours
    "retention_days": 4,
    "rules": [
        {"id": "repeated_refusal", "version": 1, "params": {"window_days": 2, "raise_at": 2, "escalate_at": 3}},
        {"id": "repeated_refusal_strict", "kind": "repeated_refusal", "version": 1,
         "params": {"window_days": 1, "raise_at": 3, "escalate_at": 4, "negative_outcomes": ["hung_up"],
                    "resolve_outcomes": ["completed", "wrong_party"]}},
        {"id": "compliance_frequency", "version": 1, "params": {"max_unanswered_per_day": 2}},
        {"id": "compliance_quiet_hours", "version": 1},
    ],
})
OUTCOME_POOL = ["hung_up", "hung_up", "refused", "declined", "declined", "completed", "no_answer", "busy",
                "voicemail", "wrong_party", "invalid_number"]
GAPS = [0, MIN, 20 * MIN, 3 * HOUR, 9 * HOUR, 20 * HOUR, 2 * DAY, 5 * DAY]
DST_T0 = int(datetime(2026, 3, 7, 12, tzinfo=ZoneInfo("America/New_York")).timestamp() * 1000)


@st.composite
def histories(draw: st.DrawFn) -> list[CallOutcome]:
    """Events of 1-3 borrowers in (time, event_id) order."""
    n = draw(st.integers(1, 45))
    base = draw(st.sampled_from([T0, DST_T0]))
    t = base + draw(st.integers(0, DAY))
    evs = []
    for i in range(n):
        t += draw(st.sampled_from(GAPS))
        outcome = draw(st.sampled_from(OUTCOME_POOL))
        evs.append(ev(f"{draw(st.integers(0, 99)):02d}-{i}", t, outcome, borrower=draw(st.sampled_from(["b1", "b2",
                                                                                                         "b3"])),
                      channel=draw(st.sampled_from(["human", "robot", "robot"])),
                      pre_notified=draw(st.sampled_from([False, False, True]))))
    return sorted(evs, key=lambda e: (e.occurred_at_ms, e.event_id))


def records(flags: list[BorrowerFlag]) -> list[OracleFlag]:
    return sorted((OracleFlag(f["borrower_id"], f["rule_id"], f["flag_id"], f["status"], f["severity"],
                              tuple(e["event_id"] for e in f["evidence"]), dict(f["facts"]), dict(f["next_action"]))
                   for f in flags),
                  key=lambda f: (f.flag_id, f.status))


def oracle_records(evs: list[CallOutcome], rules) -> list[OracleFlag]:
    return sorted(oracle_flag_records(evs, rules), key=lambda f: (f.flag_id, f.status))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=histories(), batch=st.integers(1, 8), persist=st.booleans(), small=st.booleans())
def test_property_ordered_input_equals_oracle(evs: list[CallOutcome], batch: int, persist: bool, small: bool) -> None:
    rules = SMALL if small else RULES
    flags, _ = feed(evs, rules=rules, batch=batch, persist=persist)
    assert records(flags) == oracle_records(evs, rules)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=histories(), batch=st.integers(1, 8), data=st.data())
def test_property_ordered_input_with_duplicates_equals_oracle(evs: list[CallOutcome], batch: int,
                                                              data: st.DataObject) -> None:
    deliveries = list(evs)
    for _ in range(data.draw(st.integers(0, 10))):
        k = data.draw(st.integers(0, len(evs) - 1))
        pos = data.draw(st.integers(deliveries.index(evs[k]) + 1, len(deliveries)))
        deliveries.insert(pos, evs[k])  # a redelivery, after the original
    flags, _ = feed(deliveries, rules=SMALL, batch=batch)
    assert records(flags) == oracle_records(evs, SMALL)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=histories(), batch=st.integers(1, 8), seed=st.integers(0, 2**32))
def test_property_minutes_late_input_covers_oracle(evs: list[CallOutcome], batch: int, seed: int) -> None:
    """Arrival up to 10 minutes out of event-time order: every batch transition is emitted,
    nothing twice, and the per-day compliance flags are exactly the batch ones."""
    rng = random.Random(seed)
    arrival = sorted(evs, key=lambda e: e.occurred_at_ms + rng.randrange(10 * MIN))
    flags, _ = feed(arrival, rules=SMALL, batch=batch)
    got = pairs(flags)
    expected = oracle_flags(evs, SMALL)
    assert len(got) == len(set(got))
    assert set(expected) <= set(got)
    compl = {f["flag_id"] for f in flags if f["rule_id"].startswith("compliance")}
    assert compl == {f.flag_id for f in oracle_flag_records(evs, SMALL) if f.rule_id.startswith("compliance")}


# --- BorrowerFlag v2: facts and next_action -------------------------------------------------------

def _last(evs: list[CallOutcome], rule_id: str = "repeated_refusal") -> BorrowerFlag:
    return of_rule(feed(evs)[0], rule_id)[-1]


def test_v2_facts_count_the_evidence_and_name_the_threshold() -> None:
    evs = [ev(1, T0, "hung_up"), ev(2, T0 + HOUR, "declined", stage="greeting"), ev(3, T0 + HOUR + MIN, "hung_up")]
    f = _last(evs)
    assert f["schema_version"] == 2 and f["status"] == "raised"
    assert f["facts"] == {
        "calls": 3, "outcome_counts": {"hung_up": 2, "declined": 1}, "hangup_stages": ["income_check", "greeting"],
        "channel_counts": {"human": 3}, "first_call_at": f["first_event_at"], "last_call_at": f["last_event_at"],
        "pre_notified": False, "pre_notified_calls": 0, "bad_hour_calls": 0,
        "threshold": {"metric": "negative_outcomes", "count": 3, "op": ">=", "limit": 3, "window_ms": 7 * DAY}}
    assert f["next_action"] == {"code": "pre_notify_sms", "params": {"calls": 3}, "also": []}


def test_next_action_priority_robot_then_sms_then_slot() -> None:
    lunch = local("2026-11-23 12:30")  # 12:00-14:00 local: a bad hour
    evs = [ev(i, lunch + i * DAY, "refused", channel="robot" if i else "human") for i in range(3)]
    f = _last(evs)
    assert f["facts"]["channel_counts"] == {"human": 1, "robot": 2} and f["facts"]["bad_hour_calls"] == 3
    assert f["next_action"] == {"code": "switch_to_human", "params": {"robot_calls": 2, "calls": 3},
                                "also": ["pre_notify_sms", "call_in_best_slot"]}
    # Half robot is not "most": pre-notified calls leave only the bad hours.
    evs = [ev(i, lunch + i * DAY, "refused", channel="robot" if i % 2 else "human", pre_notified=i == 0)
           for i in range(4)]
    f = of_rule(feed(evs)[0], "repeated_refusal")[0]
    assert f["facts"]["pre_notified"] and f["facts"]["pre_notified_calls"] == 1
    assert f["next_action"] == {"code": "call_in_best_slot", "params": {"bad_hour_calls": 3, "calls": 3}, "also": []}


def test_next_action_without_a_remedy_is_manual_review() -> None:
    evs = [ev(i, T0 + i * HOUR, "declined", pre_notified=True) for i in range(3)]
    assert _last(evs)["next_action"] == {"code": "manual_review", "params": {"calls": 3}, "also": []}


def test_escalation_suggests_a_branch_visit_and_resolution_nothing() -> None:
    evs = [ev(i, T0 + i * HOUR) for i in range(5)] + [ev(9, T0 + DAY, "completed")]
    flags = of_rule(feed(evs)[0], "repeated_refusal")
    assert [f["status"] for f in flags] == ["raised", "escalated", "resolved"]
    esc, res = flags[1], flags[2]
    assert esc["next_action"] == {"code": "escalate_branch_visit", "params": {"refusals": 5, "limit": 5},
                                  "also": ["pre_notify_sms"]}
    assert esc["facts"]["threshold"] == {"metric": "negative_outcomes", "count": 5, "op": ">=", "limit": 5,
                                         "window_ms": 7 * DAY}
    assert res["next_action"] == {"code": "none", "params": {}, "also": []}
    assert res["facts"]["threshold"] is None and res["facts"]["outcome_counts"] == {"completed": 1}


def test_compliance_flags_suggest_pausing_or_rescheduling() -> None:
    evs = [ev(i, T0 + i * MIN, "no_answer") for i in range(7)] + [ev(20, local("2026-11-24 23:00"), "completed")]
    flags = feed(evs)[0]
    freq, quiet = of_rule(flags, "compliance_frequency")[0], of_rule(flags, "compliance_quiet_hours")[0]
    assert freq["facts"]["threshold"] == {"metric": "unanswered_attempts", "count": 7, "op": ">", "limit": 6,
                                          "window_ms": DAY}
    assert freq["next_action"] == {"code": "pause_until_next_day", "params": {"attempts": 7, "limit": 6}, "also": []}
    assert quiet["facts"]["bad_hour_calls"] == 1
    assert quiet["next_action"] == {"code": "reschedule_outside_quiet_hours", "params": {"calls": 1}, "also": []}
    assert records(flags) == oracle_records(evs, RULES)


def test_v2_keeps_every_v1_field() -> None:
    f = _last([ev(i, T0 + i * HOUR) for i in range(3)])
    v1 = {"flag_id", "borrower_id", "loan_id", "rule_id", "rule_version", "severity", "status", "evidence",
          "first_event_at", "last_event_at", "explanation", "emitted_at"}
    assert set(f) == v1 | {"schema_version", "facts", "next_action"}
    assert f["explanation"].startswith("3 negative outcomes in 7 days")


def test_a_state_saved_before_pre_notified_was_held_still_loads() -> None:
    evs = [ev(i, T0 + i * HOUR, pre_notified=True) for i in range(2)]
    _, states = feed(evs)
    old = states["b1"]
    for r in old.events:
        del r[9:]  # as saved by the previous release: 9 elements per held event
    state = BorrowerState.from_bytes(old.to_bytes())
    _, out = apply_events(state, "b1", [(ev(3, T0 + 3 * HOUR, pre_notified=True), 10)], RULES, NOW)
    assert out[0]["facts"]["pre_notified_calls"] == 1  # only the new call is known to be pre-notified


@given(st.integers(min_value=-1, max_value=2**62), st.integers(min_value=-1, max_value=2**62),
       st.lists(st.text(max_size=8), max_size=3))
def test_the_newer_state_is_the_one_that_applied_the_higher_offset(a: int, b: int, ids: list[str]) -> None:
    """A restore keeps, of two states of a borrower, the one with the higher applied offset (the
    later written on a tie); the offset is read from the state's head without parsing it."""
    old = BorrowerState([[1, i, "hung_up"] for i in ids], a).to_bytes()
    new = BorrowerState([], b).to_bytes()
    assert applied_offset_of(old) == BorrowerState.from_bytes(old).applied_offset == a
    assert newer_state("b1", old, new) is (old if a > b else new)
    assert applied_offset_of(b'{"o":%d,"v":1,"e":[]}' % a) == a, "another key order falls back to parsing"


def test_values_that_are_not_borrower_states_keep_the_later_write() -> None:
    assert applied_offset_of(b"x2") == -1 and applied_offset_of(b'{"a": 1}') == -1
    assert newer_state("k", b"x1", b"x2") == b"x2"
