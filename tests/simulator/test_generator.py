"""The call stream: determinism, contract conformance, ids, attempts, timing and scenarios."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import jsonschema
import pytest

from hangwatch.schemas.call_outcome import CallOutcome, decode
from hangwatch.simulator import FaultConfig, SimConfig, SimRecord, generate, generate_events
from hangwatch.simulator.clock import is_quiet
from hangwatch.simulator.dialler import CLOSING_OUTCOMES, HANDOVER_OUTCOMES, MAX_ATTEMPTS_HUMAN, MAX_ATTEMPTS_ROBOT
from hangwatch.simulator.population import Population

from .conftest import FAULTS, START_MS

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "json" / "call_outcome.v1.json").read_text())


def _digest(records: list[SimRecord]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(repr(r.key).encode())
        h.update(r.value)
        h.update(repr((r.fault, r.error_kind, r.lateness_ms)).encode())
    return h.hexdigest()


def test_same_seed_gives_identical_bytes() -> None:
    cfg = SimConfig(seed=42, count=5_000, rate=2.0, start_ms=START_MS, faults=FAULTS, scenario="quiet_hours")
    a, b = list(generate(cfg)), list(generate(cfg))
    assert [(r.key, r.value) for r in a] == [(r.key, r.value) for r in b]
    assert _digest(a) == _digest(b)


def test_different_seed_or_start_gives_different_output() -> None:
    base = SimConfig(seed=42, count=500, start_ms=START_MS)
    ref = [r.value for r in generate(base)]
    other_seed = [r.value for r in generate(SimConfig(seed=43, count=500, start_ms=START_MS))]
    other_start = [r.value for r in generate(SimConfig(seed=42, count=500, start_ms=START_MS + 1000))]
    assert ref != other_seed and not set(ref) & set(other_seed)
    # Event ids depend on the start, so two runs never collide in a consumer's de-duplication.
    ids = {json.loads(v)["event_id"] for v in ref}
    assert not ids & {json.loads(v)["event_id"] for v in other_start}


def test_a_longer_run_starts_with_the_shorter_one() -> None:
    short = [r.value for r in generate(SimConfig(seed=1, count=300, start_ms=START_MS))]
    long = [r.value for r in generate(SimConfig(seed=1, count=600, start_ms=START_MS))]
    assert long[:300] == short


def test_every_valid_record_decodes_to_its_event(faulty_run: tuple[SimConfig, list[SimRecord]]) -> None:
    _, records = faulty_run
    valid = [(r, r.event) for r in records if r.event is not None]
    assert valid
    for r, e in valid:
        assert decode(r.value, r.key, now_ms=e.occurred_at_ms) == e
        assert r.value == e.to_json()
        assert r.key == e.borrower_id.encode()
    for r, _ in valid[:300]:
        jsonschema.validate(json.loads(r.value), SCHEMA)


def test_ids_and_pseudonyms(clean_run: tuple[SimConfig, list[SimRecord]]) -> None:
    cfg, records = clean_run
    events = [r.event for r in records if r.event]
    assert len({e.event_id for e in events}) == len(events) == cfg.count
    assert len({e.call_id for e in events}) == len(events)
    assert all(re.fullmatch(r"b-[0-9a-f]{10}", e.borrower_id) for e in events)
    assert all(re.fullmatch(r"loan-\d{8}", e.loan_id) for e in events)
    # One loan per borrower, one home branch per borrower.
    loans, branches = defaultdict(set), defaultdict(set)
    for e in events:
        loans[e.borrower_id].add(e.loan_id)
        branches[e.borrower_id].add(e.branch)
    assert all(len(v) == 1 for v in loans.values()) and all(len(v) == 1 for v in branches.values())


def test_channels_agents_durations_and_stages(clean_run: tuple[SimConfig, list[SimRecord]]) -> None:
    _, records = clean_run
    for r in records:
        e = r.event
        assert e is not None
        assert (e.agent_id is None) == (e.channel == "robot")
        assert (e.hangup_stage is not None) == (e.outcome == "hung_up")
        if e.connected:
            assert e.duration_s > 0
        else:
            assert e.duration_s == 0
    campaigns = Counter(r.event.campaign for r in records if r.event)
    assert set(campaigns) == {"pre_loan_verification", "post_loan_review", "repayment_reminder"}
    scripts = Counter(r.event.script_version for r in records if r.event)
    assert len(scripts) == 5


def test_attempt_no_counts_calls_per_borrower_and_campaign(clean_run: tuple[SimConfig, list[SimRecord]]) -> None:
    """A case (borrower, campaign) counts its attempts 1, 2, 3...; it keeps its channel, agent
    and script unless a bot hands over to a person; a new case starts at 1 only after the last
    one closed."""
    _, records = clean_run
    last: dict[tuple[str, str], CallOutcome] = {}
    restarted = handovers = 0
    for r in records:
        e = r.event
        assert e is not None
        k = (e.borrower_id, e.campaign)
        prev = last.get(k)
        if prev is None:
            assert e.attempt_no == 1
        elif e.attempt_no == 1:
            max_attempts = MAX_ATTEMPTS_ROBOT if prev.channel == "robot" else MAX_ATTEMPTS_HUMAN
            assert prev.outcome in CLOSING_OUTCOMES or prev.attempt_no == max_attempts
            restarted += 1
        else:
            assert e.attempt_no == (prev.attempt_no or 0) + 1
            assert e.pre_notified == prev.pre_notified
            if prev.channel == "robot" and prev.outcome in HANDOVER_OUTCOMES:
                assert e.channel == "human"  # a person takes over from the bot
                handovers += 1
            else:
                assert (e.channel, e.agent_id, e.script_version) == (prev.channel, prev.agent_id, prev.script_version)
        last[k] = e
    assert Counter(e.attempt_no for e in last.values())[3] > 100  # retries do happen
    assert handovers > 100


def test_failed_calls_are_retried_later_and_completed_ones_are_not(
        clean_run: tuple[SimConfig, list[SimRecord]]) -> None:
    _, records = clean_run
    by_case: dict[tuple[str, str], list[CallOutcome]] = defaultdict(list)
    for r in records:
        assert r.event is not None
        by_case[(r.event.borrower_id, r.event.campaign)].append(r.event)
    gaps = []
    for calls in by_case.values():
        for a, b in itertools.pairwise(calls):
            if b.attempt_no == (a.attempt_no or 0) + 1:
                assert a.outcome not in CLOSING_OUTCOMES
                gaps.append(b.occurred_at_ms - a.occurred_at_ms)
    assert gaps and min(gaps) >= 0.3 * 3_600_000 - 1  # the shortest retry delay (robots, unanswered)


def test_backfill_times_are_ordered_from_start_at_rate_and_skip_quiet_hours(
        clean_run: tuple[SimConfig, list[SimRecord]]) -> None:
    _, records = clean_run
    times = [r.event.occurred_at_ms for r in records if r.event]
    assert times == sorted(times) and times[0] >= START_MS
    assert not any(is_quiet(t) for t in times)
    # 14 call hours a day at 1 call/s: 120,000 calls take ~2.4 days of calendar time.
    first_day = [t for t in times if t < START_MS + 14 * 3_600_000]
    assert 14 * 3600 * 0.97 < len(first_day) < 14 * 3600 * 1.03


def test_duration_bounds_event_time() -> None:
    cfg = SimConfig(seed=2, duration_s=600, rate=10, start_ms=START_MS)
    times = [r.event.occurred_at_ms for r in generate(cfg) if r.event]
    assert all(START_MS <= t < START_MS + 600_000 for t in times)
    assert 5_400 < len(times) < 6_600


def test_quiet_hours_scenario_places_the_requested_share_at_night() -> None:
    cfg = SimConfig(seed=3, count=60_000, rate=0.5, start_ms=START_MS, scenario="quiet_hours", quiet_share=0.1)
    events = [r.event for r in generate(cfg) if r.event]
    span_days = (events[-1].occurred_at_ms - START_MS) / 86_400_000
    assert span_days > 1.5
    # Whole local days only, so the share is not skewed by a partial night at the end.
    whole = [e for e in events if e.occurred_at_ms < START_MS + int(span_days) * 86_400_000]
    share = sum(is_quiet(e.occurred_at_ms) for e in whole) / len(whole)
    assert 0.08 < share < 0.12


def test_live_mode_stamps_calls_with_the_clock() -> None:
    ticks = itertools.count(1_795_000_000_000, 250)  # ms; the fake clock advances 250 ms per read
    clock = lambda: next(ticks) / 1000  # noqa: E731
    records = list(generate(SimConfig(seed=1, count=20), clock=clock))
    times = [r.event.occurred_at_ms for r in records if r.event]
    assert len(times) == 20 and times == sorted(times)
    assert times[0] == 1_795_000_000_250  # the first read fixes the run's start (ids), the next stamps call 1
    assert all(b - a == 250 for a, b in itertools.pairwise(times))


def test_live_duration_stops_on_the_clock() -> None:
    ticks = itertools.count(0, 1000)
    records = list(generate(SimConfig(seed=1, duration_s=10.0), clock=lambda: next(ticks) / 1000))
    assert 8 <= len(records) <= 10


def test_generate_events_yields_the_calls_of_generate() -> None:
    cfg = SimConfig(seed=9, count=1000, start_ms=START_MS)
    assert [v for _, v, _ in generate_events(cfg)] == [r.value for r in generate(cfg)]


@pytest.mark.parametrize("kwargs, message", [
    ({"rate": 0}, "rate must be > 0"),
    ({"count": -1}, "count must be >= 0"),
    ({"scenario": "flood"}, "unknown scenario"),
    ({"faults": FaultConfig(duplicates=1.5)}, "duplicates share"),
    ({"faults": FaultConfig(ooo_window_s=900)}, "below the grace period"),
    ({"faults": FaultConfig(late_min_s=60)}, "must exceed the grace period"),
    ({"scenario": "branch_spike", "branches": ("a", "b")}, "spike branch"),
])
def test_bad_config_says_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimConfig(**kwargs)


def test_population_ids_are_unique_stable_and_seeded() -> None:
    a = Population(SimConfig(seed=1, borrowers=200_000))
    ids = [a.borrower_id(i) for i in range(200_000)]
    assert len(set(ids)) == len(ids)
    assert a.borrower(123) == Population(SimConfig(seed=1, borrowers=200_000)).borrower(123)
    assert a.borrower_id(123) != Population(SimConfig(seed=2, borrowers=200_000)).borrower_id(123)


def test_default_population_scales_with_the_rate() -> None:
    assert SimConfig(rate=50).population_size == 50_000_000
    assert SimConfig(rate=0.0001).population_size == 1_000
    assert SimConfig(rate=50, borrowers=300).population_size == 300
