"""Deterministic call events (seeded) and their Kafka (key, value) records."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable
from typing import Any

import orjson

from hangwatch.schemas.call_outcome import CallOutcome
from testkit.oracles.rates import CONNECTED, OUTCOMES

# Two days ago at midnight UTC: recent enough that no table's retention (TTL on current
# ClickHouse) expires the test rows.
BASE_MS = (int(time.time()) // 86400 - 2) * 86400 * 1000
BRANCHES = ("sh-pudong", "bj-haidian", "gz-tianhe")
CAMPAIGNS = ("pre_loan_verification", "post_loan_review", "repayment_reminder")
STAGES = ("greeting", "identity_check", "income_check", "collateral_check", "closing")
GRADES = ("AAA", "AA", "A", "B", "C", "unrated")

Record = tuple[bytes | None, bytes | None]  # a Kafka record's key and value


def make_event(rng: random.Random, occurred_at_ms: int, i: int) -> CallOutcome:
    """One valid event with every optional field sometimes missing."""
    channel = rng.choice(("human", "robot"))
    outcome = rng.choice(OUTCOMES)
    return CallOutcome(
        event_id=f"ev-{uuid.UUID(int=rng.getrandbits(128))}",
        call_id=f"call-{i}",
        borrower_id=f"b-{rng.randrange(200):04d}",
        loan_id=f"loan-{rng.randrange(400):04d}",
        occurred_at_ms=occurred_at_ms,
        campaign=rng.choice(CAMPAIGNS),
        channel=channel,
        agent_id=None if channel == "robot" else f"agent-{rng.randrange(6)}",
        branch=rng.choice(BRANCHES),
        outcome=outcome,
        hangup_stage=rng.choice(STAGES) if outcome in ("hung_up", "refused") else None,
        duration_s=round(rng.uniform(0, 300), 1) if outcome in CONNECTED else 0.0,
        attempt_no=rng.choice((None, 1, 2, 3)),
        pre_notified=rng.random() < 0.5,
        credit_grade=rng.choice((*GRADES, None)),
        first_time_borrower=rng.choice((True, False, None)),
        script_version=rng.choice(("v1", "v2", None)),
        extra={"queue": "q1"} if i % 7 == 0 else {},
    )


def make_events(n: int, seed: int, start_ms: int, span_s: int) -> list[CallOutcome]:
    """n events at random times in [start_ms, start_ms + span_s), the same for the same seed."""
    rng = random.Random(seed)
    return [make_event(rng, start_ms + rng.randrange(span_s * 1000), i) for i in range(n)]


def event_records(events: Iterable[CallOutcome]) -> list[Record]:
    """The events as the simulator produces them: keyed by borrower, the JSON contract as value."""
    return [(e.borrower_id.encode(), e.to_json()) for e in events]


def json_records(records: Iterable[dict[str, Any]], key: str) -> list[Record]:
    """JSON records keyed by their field `key`."""
    return [(str(r[key]).encode(), orjson.dumps(r)) for r in records]
