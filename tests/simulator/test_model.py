"""The seed article's factors are visible in aggregate: each comparison is between groups of
thousands of connected calls, with margins far beyond sampling noise."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Hashable

from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.simulator import SimConfig, SimRecord, generate
from hangwatch.simulator.clock import local_hour
from hangwatch.simulator.population import Population

from .conftest import START_MS


def _hangup_rate(events: list[CallOutcome], by: Callable[[CallOutcome], Hashable]) -> dict[Hashable, float]:
    connected: Counter[Hashable] = Counter()
    hung: Counter[Hashable] = Counter()
    for e in events:
        if e.connected:
            k = by(e)
            connected[k] += 1
            hung[k] += e.outcome == "hung_up"
    assert min(connected.values()) > 300, connected  # enough calls for the comparison to mean something
    return {k: hung[k] / connected[k] for k in connected}


def _events(run: tuple[SimConfig, list[SimRecord]]) -> list[CallOutcome]:
    return [r.event for r in run[1] if r.event is not None]


def test_robot_calls_hang_up_more_and_mostly_at_the_greeting(clean_run: tuple[SimConfig, list[SimRecord]]) -> None:
    events = _events(clean_run)
    rate = _hangup_rate(events, lambda e: e.channel)
    assert rate["robot"] > rate["human"] * 1.25
    robot_stages = Counter(e.hangup_stage for e in events if e.outcome == "hung_up" and e.channel == "robot")
    assert robot_stages.most_common(1)[0][0] == "greeting"
    assert robot_stages["greeting"] / sum(robot_stages.values()) > 0.45


def test_pre_notification_lowers_hang_ups_and_declines(clean_run: tuple[SimConfig, list[SimRecord]]) -> None:
    events = _events(clean_run)
    rate = _hangup_rate(events, lambda e: e.pre_notified)
    assert rate[True] < rate[False] * 0.8
    declined = Counter(e.pre_notified for e in events if e.outcome == "declined")
    calls = Counter(e.pre_notified for e in events)
    assert declined[True] / calls[True] < declined[False] / calls[False] * 0.7


def test_credit_grade_orders_the_hang_up_rate(clean_run: tuple[SimConfig, list[SimRecord]]) -> None:
    rate = _hangup_rate(_events(clean_run), lambda e: e.credit_grade)
    assert rate["AAA"] < rate["AA"] < rate["A"] < rate["B"] < rate["C"]


def test_first_time_borrowers_hang_up_more_at_income_and_collateral_checks(
        clean_run: tuple[SimConfig, list[SimRecord]]) -> None:
    events = [e for e in _events(clean_run) if e.channel == "human"]
    rate = _hangup_rate(events, lambda e: e.first_time_borrower)
    assert rate[True] > rate[False] * 1.1
    stages: dict[bool | None, Counter[str | None]] = defaultdict(Counter)
    for e in events:
        if e.outcome == "hung_up":
            stages[e.first_time_borrower][e.hangup_stage] += 1

    def sensitive(c: Counter[str | None]) -> float:
        return (c["income_check"] + c["collateral_check"]) / sum(c.values())

    assert sensitive(stages[True]) > sensitive(stages[False]) + 0.1


def test_the_pilot_script_is_the_worst_human_script(clean_run: tuple[SimConfig, list[SimRecord]]) -> None:
    rate = _hangup_rate([e for e in _events(clean_run) if e.channel == "human"], lambda e: e.script_version)
    assert rate["v2.5-pilot"] > max(rate["v2.3"], rate["v2.4"]) * 1.25


def test_lunch_and_evening_are_worse_than_mid_morning(clean_run: tuple[SimConfig, list[SimRecord]]) -> None:
    def slot(e: CallOutcome) -> str:
        h = local_hour(e.occurred_at_ms)
        return "lunch" if h in (12, 13) else "evening" if h >= 18 else "morning" if 9 <= h <= 11 else "other"

    rate = _hangup_rate(_events(clean_run), slot)
    assert rate["lunch"] > rate["morning"] * 1.2
    assert rate["evening"] > rate["morning"] * 1.2


def test_quiet_hours_are_the_worst_of_all() -> None:
    cfg = SimConfig(seed=8, count=40_000, rate=0.4, start_ms=START_MS, scenario="quiet_hours", quiet_share=0.3)
    rate = _hangup_rate([r.event for r in generate(cfg) if r.event],
                        lambda e: local_hour(e.occurred_at_ms) >= 22 or local_hour(e.occurred_at_ms) < 8)
    assert rate[True] > rate[False] * 1.5


def test_the_spike_branch_jumps_during_the_spike_only(clean_run: tuple[SimConfig, list[SimRecord]]) -> None:
    cfg, _ = clean_run
    lo, hi = cfg.spike_window_ms(cfg.start_ms or 0)
    events = _events(clean_run)

    def phase(e: CallOutcome) -> tuple[str, bool]:
        return e.branch, lo <= e.occurred_at_ms < hi

    rate = _hangup_rate([e for e in events if e.branch in ("hangzhou-xihu", "chengdu-jinjiang")], phase)
    assert rate[("hangzhou-xihu", True)] > rate[("hangzhou-xihu", False)] * 2
    # Relative to another branch at the same hours (hour of day matters too), the spike branch
    # is ~3x inside the window and level outside it.
    inside = rate[("hangzhou-xihu", True)] / rate[("chengdu-jinjiang", True)]
    outside = rate[("hangzhou-xihu", False)] / rate[("chengdu-jinjiang", False)]
    assert inside > 2.2 and 0.8 < outside < 1.25


def test_repeat_refusers_are_few_and_mostly_negative(clean_run: tuple[SimConfig, list[SimRecord]]) -> None:
    cfg, _ = clean_run
    pop = Population(cfg)
    everyone = [pop.borrower(i) for i in range(pop.size)]
    refusers = {b.borrower_id for b in everyone if b.refuser}
    assert 0.015 < len(refusers) / len(everyone) < 0.025
    negative = {"hung_up", "refused", "declined"}
    outcomes: dict[bool, Counter[bool]] = defaultdict(Counter)
    for e in _events(clean_run):
        outcomes[e.borrower_id in refusers][e.outcome in negative] += 1
    share = {k: v[True] / sum(v.values()) for k, v in outcomes.items()}
    assert share[True] > 0.6 > 0.35 > share[False]
    # They are called more often too: their cases never complete, so they are retried.
    per_borrower = Counter(e.borrower_id for e in _events(clean_run))
    called_refusers = [n for b, n in per_borrower.items() if b in refusers]
    called_others = [n for b, n in per_borrower.items() if b not in refusers]
    assert sum(called_refusers) / len(called_refusers) > 1.25 * sum(called_others) / len(called_others)


def test_repeat_refusers_trip_the_repeated_refusal_rule(
        clean_run: tuple[SimConfig, list[SimRecord]]) -> None:
    """>= 3 negative outcomes within 7 days: the rule should point at the refusers."""
    cfg, _ = clean_run
    pop = Population(cfg)
    refusers = {b.borrower_id for b in (pop.borrower(i) for i in range(pop.size)) if b.refuser}
    negatives: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for e in _events(clean_run):  # the run spans less than 7 days
        negatives[e.borrower_id] += e.outcome in ("hung_up", "refused", "declined")
        calls[e.borrower_id] += 1
    flagged = {b for b, n in negatives.items() if n >= 3}
    called_refusers = refusers & set(calls)
    # Refusers are 2 % of the population, so they need not be most of the flags; but a refuser
    # is far more likely to be flagged than anyone else.
    rate_refusers = len(flagged & called_refusers) / len(called_refusers)
    rate_others = len(flagged - refusers) / (len(calls) - len(called_refusers))
    assert rate_refusers > 10 * rate_others
    # A refuser called five times or more in the run is mostly caught.
    often = {b for b in refusers if calls[b] >= 5}
    assert len(often) > 50 and len(often & flagged) > 0.7 * len(often)


def test_outcome_mix_is_plausible(clean_run: tuple[SimConfig, list[SimRecord]]) -> None:
    events = _events(clean_run)
    mix = Counter(e.outcome for e in events)
    n = len(events)
    assert set(mix) == {"completed", "hung_up", "refused", "wrong_party", "declined", "no_answer", "busy",
                        "voicemail", "invalid_number"}
    contact = sum(mix[o] for o in ("completed", "hung_up", "refused", "wrong_party")) / n
    assert 0.55 < contact < 0.8
    assert 0.4 < mix["completed"] / n < 0.6
