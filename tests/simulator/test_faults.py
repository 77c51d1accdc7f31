"""Fault injection: every record knows what it is, and the labels are true."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

import pytest

from hangwatch.schemas.call_outcome import ContractError, decode
from hangwatch.simulator import (
    DUPLICATE,
    LATE,
    MALFORMED,
    OUT_OF_ORDER,
    SimConfig,
    SimRecord,
    generate,
    generate_events,
)
from hangwatch.simulator.malformed import BUILDERS, ERROR_KINDS, build

from .conftest import START_MS

INVALID_EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "call_outcome" / "invalid"


def _now(r: SimRecord) -> int:
    return START_MS + 10 * 86_400_000  # any "now" after the run: only the future check uses it


def test_fault_shares_are_roughly_as_requested(faulty_run: tuple[SimConfig, list[SimRecord]]) -> None:
    cfg, records = faulty_run
    n = cfg.count or 0
    faults = Counter(r.fault for r in records)
    f = cfg.faults
    assert abs(faults[DUPLICATE] / n - f.duplicates) < 0.004
    assert abs(faults[MALFORMED] / n - f.malformed) < 0.004
    # Labels are measured on delivery; the few delayed calls at the very end can come out
    # less late than intended, never more.
    assert abs(faults[LATE] / n - f.late) < 0.002
    assert abs(faults[OUT_OF_ORDER] / n - f.out_of_order) < 0.006
    assert len(records) == n + faults[DUPLICATE] + faults[MALFORMED]


def test_valid_deduplicated_events_are_exactly_the_calls(faulty_run: tuple[SimConfig, list[SimRecord]]) -> None:
    cfg, records = faulty_run
    oracle = {r.event.event_id: r.event for r in records if r.event is not None}
    calls = [ev for ev, _, _ in generate_events(cfg)]
    assert oracle == {e.event_id: e for e in calls}


def test_duplicates_repeat_an_earlier_record_byte_for_byte(faulty_run: tuple[SimConfig, list[SimRecord]]) -> None:
    _, records = faulty_run
    seen: set[tuple[bytes | None, bytes]] = set()
    dups = 0
    for r in records:
        if r.fault == DUPLICATE:
            dups += 1
            assert (r.key, r.value) in seen
        else:
            assert (r.key, r.value) not in seen or r.fault == MALFORMED
        seen.add((r.key, r.value))
    assert dups > 0


def test_lateness_labels_match_delivery_order(faulty_run: tuple[SimConfig, list[SimRecord]]) -> None:
    cfg, records = faulty_run
    grace_ms = cfg.faults.grace_s * 1000
    watermark = -1
    for r in records:
        if r.event is None:
            continue
        t = r.event.occurred_at_ms
        lateness = max(0, watermark - t)
        assert r.lateness_ms == lateness
        if r.fault == LATE:
            assert lateness > grace_ms
        elif r.fault == OUT_OF_ORDER:
            assert 0 < lateness <= grace_ms
        elif r.fault is None:
            assert lateness == 0
        watermark = max(watermark, t)
    late = [r.lateness_ms for r in records if r.fault == LATE]
    # At most the longest delay; less than the shortest only when the night (no calls) intervened.
    assert late and max(late) <= 60 * 60_000
    assert sum(x >= 20 * 60_000 for x in late) > 0.9 * len(late)


def test_every_malformed_record_fails_with_its_error(faulty_run: tuple[SimConfig, list[SimRecord]]) -> None:
    _, records = faulty_run
    bad = [r for r in records if r.fault == MALFORMED]
    assert {r.error_kind for r in bad} == set(ERROR_KINDS)
    for r in bad:
        assert r.event is None
        with pytest.raises(ContractError) as err:
            decode(r.value, r.key, now_ms=_now(r))
        assert (err.value.kind, err.value.field) == (r.error_kind, r.error_field), r.value[:200]


def test_malformed_kinds_cover_the_contract_examples() -> None:
    expected = {json.loads(p.read_text())["expect"]["error_kind"] for p in INVALID_EXAMPLES.glob("*.json")}
    assert expected <= set(ERROR_KINDS)


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_each_builder_breaks_the_contract_as_it_says(builder) -> None:  # type: ignore[no-untyped-def]
    import random

    rng = random.Random(0)
    for ev, _, _ in generate_events(SimConfig(seed=4, count=40, start_ms=START_MS)):
        m = builder(ev, rng)
        with pytest.raises(ContractError) as err:
            decode(m.value, m.key, now_ms=ev.occurred_at_ms)
        assert err.value.kind == builder.__name__ == m.error_kind
        assert err.value.field == m.error_field


def test_not_utf8_messages_are_gbk() -> None:
    import random

    ev = next(generate_events(SimConfig(seed=4, count=1, start_ms=START_MS)))[0]
    m = build(ev, random.Random(1))
    for _ in range(200):  # draw until the GBK kind comes up
        if m.error_kind == "not_utf8":
            break
        m = build(ev, random.Random(_))
    assert m.error_kind == "not_utf8"
    assert "上海浦东支行" in m.value.decode("gbk")
    example = base64.b64decode(json.loads((INVALID_EXAMPLES / "not_utf8.json").read_text())["value_b64"])
    with pytest.raises(UnicodeDecodeError):
        example.decode("utf-8")


def test_no_faults_means_plain_in_order_records() -> None:
    records = list(generate(SimConfig(seed=1, count=2000, start_ms=START_MS)))
    assert all(r.fault is None and r.lateness_ms == 0 and r.event is not None for r in records)
