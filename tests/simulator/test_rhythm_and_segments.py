"""The daily rhythm of call volume and segment spikes (branch, campaign, script) of the simulator."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from hangwatch.simulator import SegmentSpike, SimConfig, generate_events
from hangwatch.simulator.clock import DAILY_RHYTHM, ArrivalClock, local_hour
from hangwatch.simulator.config import CAMPAIGN_NAMES, SCRIPT_VERSIONS
from hangwatch.simulator.model import CAMPAIGNS, SCRIPTS

MIDNIGHT = 1_795_363_200_000  # 2026-11-23 00:00 +08:00


def test_names_agree_with_the_model() -> None:
    assert tuple(c.name for c in CAMPAIGNS) == CAMPAIGN_NAMES
    assert tuple(s.version for s in SCRIPTS) == SCRIPT_VERSIONS


def test_arrivals_follow_the_daily_rhythm() -> None:
    clock = ArrivalClock(MIDNIGHT, 2.0, 0.0, random.Random(5), DAILY_RHYTHM)
    per_hour: Counter[int] = Counter()
    t = clock.next_ms()
    while t < MIDNIGHT + 3 * 86_400_000:
        per_hour[local_hour(t)] += 1
        t = clock.next_ms()
    assert all(per_hour[h] == 0 for h in (*range(8), 22, 23))  # quiet hours skipped (quiet = 0)
    for h in range(8, 22):  # 3 days x 3600 s x 2 calls/s x factor, Poisson: within 5 sd
        expected = 3 * 3600 * 2.0 * DAILY_RHYTHM[h]
        assert abs(per_hour[h] - expected) < 5 * expected**0.5, h
    assert per_hour[10] > 2 * per_hour[21]
    with pytest.raises(ValueError):
        ArrivalClock(MIDNIGHT, 1.0, 0.0, random.Random(1), (1.0,) * 23)


def test_flat_by_default() -> None:
    cfg = SimConfig(seed=3, rate=2.0, duration_s=86_400, start_ms=MIDNIGHT)
    hours = Counter(local_hour(e.occurred_at_ms) for e, _, _ in generate_events(cfg))
    assert abs(hours[8] - hours[21]) < 5 * (hours[8] ** 0.5)


def _hangup(events: list, pick) -> float:  # type: ignore[no-untyped-def]
    sel = [e for e in events if pick(e) and e.outcome in ("completed", "hung_up", "refused", "wrong_party")]
    return sum(e.outcome == "hung_up" for e in sel) / len(sel)


@pytest.mark.parametrize(("dim", "value", "field"), [("campaign", "post_loan_review", "campaign"),
                                                     ("script_version", "v2.4", "script_version"),
                                                     ("branch", "shanghai-xuhui", "branch")])
def test_segment_spike_raises_only_its_segment(dim: str, value: str, field: str) -> None:
    at = MIDNIGHT + 10 * 3_600_000
    spike = SegmentSpike(dim, value, at, 120.0, 3.0)  # type: ignore[arg-type]
    base = SimConfig(seed=9, rate=8.0, duration_s=6 * 3600, start_ms=MIDNIGHT + 8 * 3_600_000)
    plain = [e for e, _, _ in generate_events(base)]
    spiked = [e for e, _, _ in generate_events(SimConfig(**{**_fields(base), "spikes": (spike,)}))]

    def inside(e) -> bool:  # type: ignore[no-untyped-def]
        return at <= e.occurred_at_ms < spike.end_ms

    def ours(e) -> bool:  # type: ignore[no-untyped-def]
        return inside(e) and getattr(e, field) == value

    def others(e) -> bool:  # type: ignore[no-untyped-def]
        return inside(e) and getattr(e, field) != value

    assert _hangup(spiked, ours) > 2.0 * _hangup(plain, ours)
    assert _hangup(spiked, others) == pytest.approx(_hangup(plain, others), abs=0.03)
    after = [e for e in spiked if e.occurred_at_ms >= spike.end_ms + 3_600_000]
    after_plain = [e for e in plain if e.occurred_at_ms >= spike.end_ms + 3_600_000]
    assert _hangup(after, lambda e: getattr(e, field) == value) == pytest.approx(
        _hangup(after_plain, lambda e: getattr(e, field) == value), abs=0.04)


def _fields(cfg: SimConfig) -> dict:
    return {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}


def test_spike_validation() -> None:
    with pytest.raises(ValueError, match="not one of"):
        SimConfig(spikes=(SegmentSpike("campaign", "nope", 0, 10.0, 2.0),))
    with pytest.raises(ValueError, match="dimension"):
        SimConfig(spikes=(SegmentSpike("agent_id", "a", 0, 10.0, 2.0),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="minutes and factor"):
        SimConfig(spikes=(SegmentSpike("branch", "shanghai-pudong", 0, 0.0, 2.0),))
