"""Record builders for the sink tests: rate, flag, alert and dead-letter records with known
contents. The shared helpers (store, router, batches, the sink thread, topics, events) are in
testkit."""

from __future__ import annotations

import os
import uuid
from typing import Any

from hangwatch.schemas.call_outcome import format_ts
from hangwatch.schemas.records import OUTCOME_COUNT_FIELDS, rate_key
from testkit.events import BASE_MS

RUN_TAG = f"hwt_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def rate_record(size: int, start_s: int, dimension: str, value: str, counts: dict[str, int], version: int,
                *, final: bool = True, source: str = "stream") -> dict[str, Any]:
    c = {f: counts.get(f, 0) for f in OUTCOME_COUNT_FIELDS}
    attempts = sum(c.values())
    connected = c["completed"] + c["hung_up"] + c["refused"] + c["wrong_party"]
    return {
        "key": rate_key(size, start_s, dimension, value), "window_size_s": size,
        "window_start": format_ts(start_s * 1000), "window_end": format_ts((start_s + size) * 1000),
        "dimension": dimension, "value": value, "attempts": attempts, "connected": connected, **c,
        "hangup_rate": c["hung_up"] / connected if connected else None,
        "decline_rate": c["declined"] / attempts if attempts else None,
        "refusal_rate": c["refused"] / connected if connected else None,
        "contact_rate": connected / attempts if attempts else None,
        "version": version, "final": final, "source": source,
        "emitted_at": format_ts((start_s + size + version) * 1000),  # deterministic: a redelivery is identical
    }


def flag_record(i: int, status: str = "raised", severity: str = "medium", base_ms: int = BASE_MS,
                borrower: str | None = None) -> dict[str, Any]:
    ev = [{"event_id": f"e{i}-{k}", "call_id": f"c{i}-{k}", "occurred_at": format_ts(base_ms + k * 60_000),
           "outcome": "refused", "hangup_stage": "income_check", "agent_id": "agent-1", "channel": "human",
           "script_version": "v2"} for k in range(3)]
    return {"flag_id": f"flag-{i}", "borrower_id": borrower or f"b-{i:04d}", "loan_id": f"loan-{i}",
            "rule_id": "repeated_refusal", "rule_version": 1, "severity": severity, "status": status,
            "evidence": ev, "first_event_at": format_ts(base_ms), "last_event_at": format_ts(base_ms + 120_000),
            "explanation": f"borrower b-{i:04d} refused 3 calls within 7 days",
            "emitted_at": format_ts(base_ms + 130_000 + (1000 if status != "raised" else 0))}


def alert_record(i: int, status: str = "firing", base_ms: int = BASE_MS) -> dict[str, Any]:
    return {"alert_id": f"branch|sh-pudong|{base_ms // 1000 + i * 300}", "status": status, "dimension": "branch",
            "value": "sh-pudong", "window_size_s": 300, "window_start": format_ts(base_ms + i * 300_000),
            "window_end": format_ts(base_ms + (i + 1) * 300_000), "connected": 40, "hung_up": 20,
            "hangup_rate": 0.5, "wilson_low": 0.35, "wilson_high": 0.65, "baseline_rate": 0.2,
            "baseline_connected": 500, "explanation": "hang-up rate 50% vs baseline 20%",
            "version": 1 if status == "firing" else 2, "emitted_at": format_ts(base_ms + (i + 1) * 300_000)}


def dlq_record(offset: int, base_ms: int = BASE_MS) -> dict[str, Any]:
    return {"source_topic": "call-outcomes", "source_partition": 0, "source_offset": offset,
            "source_timestamp_ms": base_ms, "key_b64": "Yi0wMDAx", "value_b64": "bm90IGpzb24=",
            "error_kind": "not_json", "error_field": None, "error": "value is not JSON",
            "received_at": format_ts(base_ms + 1000), "worker": "worker@test"}
