"""Fixture data for the panel, alert and report tests: simulator traffic turned into table rows
by the pipeline's own code, stored with the sinks' real migrations.

- call_events and dead_letters: simulator records (with duplicates, late and malformed
  ones) through the sink's converters (sinks.convert), duplicates included, so FINAL matters.
- hangup_rates: the batch oracle's window counts as RateUpdate records (plus an older,
  wrong version of some cells that FINAL must hide, and a few reconcile rows).
- borrower_flags: the stream's flag rules (streams.core.flags) over each borrower's calls.
- hangup_alerts: a few hand-made records with known answers; sink_batches: the flush log
  of the stored calls, as the sink writes it.
Kafka and the Faust worker are not involved: the end-to-end suite covers them.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from hangwatch.schemas.call_outcome import CallOutcome, format_ts
from hangwatch.schemas.records import OUTCOME_COUNT_FIELDS
from hangwatch.simulator import FaultConfig, SimConfig, SpikeConfig, generate
from hangwatch.sinks import convert, migrate, rollup, tables
from hangwatch.sinks.backends.base import Backend
from hangwatch.streams.core.flags import apply_events
from hangwatch.streams.core.rules_config import default_rules
from testkit.fakes import FakeMessage
from testkit.oracles.rates import dedupe, oracle_counts

START = datetime(2025, 6, 2, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai, a Monday
LATE_AFTER_S = 600  # worker.grace_s of these tests' settings
TZ = "Asia/Shanghai"  # the settings' zone in these tests: the day rollups follow its midnight
HOURS = 4
END = START + timedelta(hours=HOURS)
SPIKE_BRANCH = "shanghai-pudong"
PARTITIONS = 4


@dataclasses.dataclass
class Fixture:
    db: str
    events: list[CallOutcome]  # valid events, deduplicated (the truth)
    ingested_at: dict[str, int]  # event_id -> first storage time (s)
    dead_letters: int
    open_alerts: int
    sink_batches: list[tuple[Any, ...]]
    rows: list[tuple[Any, ...]]  # every call_events row written (copies included)
    flags: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def sim_config() -> SimConfig:
    return SimConfig(
        seed=11, rate=1.2, duration_s=HOURS * 3600, start_ms=int(START.timestamp() * 1000), borrowers=1200,
        refuser_share=0.06, scenario="branch_spike",
        spike=SpikeConfig(branch=SPIKE_BRANCH, at_ms=int((START + timedelta(hours=2)).timestamp() * 1000),
                          minutes=30, factor=3.0),
        faults=FaultConfig(duplicates=0.02, late=0.01, malformed=0.004))


# The keyed hash every personal_data dead letter of the fixture carries.
PERSONAL_DATA_HMAC = "5a" * 32


def build(backend: Backend, db: str) -> Fixture:
    migrate.apply(backend, db, {})
    records = list(generate(sim_config()))
    event_rows: list[tuple[Any, ...]] = []
    dup_rows: list[tuple[Any, ...]] = []
    dlq_rows: list[tuple[Any, ...]] = []
    ingested: dict[str, int] = {}
    offsets = [0] * PARTITIONS
    newest_s = 0
    for rec in records:
        part = hash(rec.key) % PARTITIONS if rec.key else 0
        offsets[part] += 1
        if rec.event is not None:
            newest_s = max(newest_s, rec.event.occurred_at_ms // 1000)
        # The sink stores a record a couple of seconds after the newest event delivered so far:
        # a late record is stored long after it happened.
        now_s = newest_s + 2
        msg = FakeMessage("call-outcomes", part, offsets[part], rec.key, rec.value, timestamp=now_s * 1000)
        if rec.event is not None:
            row = convert.call_event_row(msg, now_s)
            # Redelivered copies go in a later INSERT (another part), as they would arrive:
            # only FINAL collapses them before a merge.
            (dup_rows if rec.event.event_id in ingested else event_rows).append(row)
            ingested.setdefault(rec.event.event_id, now_s)
        else:
            dlq_rows.append(convert.dead_letter_record_row(_dead_letter(msg, rec.error_kind, rec.error_field), now_s))
    for rows in (event_rows, dup_rows):  # as the sink does after each flush: copies and rollups
        _insert(backend, db, tables.CALL_EVENTS, rows)
        _insert(backend, db, tables.BORROWER_CALLS, [_project(tables.CALL_EVENTS, tables.BORROWER_CALLS, r)
                                                     for r in rows])
        times = [int(r[tables.CALL_EVENTS.columns.index("occurred_at")]) for r in rows]
        rollup.refresh(backend, db, rollup.Touched.of(times, TZ))
    _insert(backend, db, tables.DEAD_LETTERS, dlq_rows)

    events = dedupe(r.event for r in records if r.event is not None)
    current, stale = _rate_rows(events)
    _insert(backend, db, tables.HANGUP_RATES, stale)
    _insert(backend, db, tables.HANGUP_RATES, current)
    flags = _flag_records(records)
    _insert(backend, db, tables.BORROWER_FLAGS, [convert.flag_row(_json_msg("borrower-flags", f), 0) for f in flags])
    alerts = _alerts()
    for a in alerts:  # one INSERT each: the resolved record supersedes the firing one only via FINAL
        _insert(backend, db, tables.HANGUP_ALERTS, [convert.alert_row(_json_msg("hangup-alerts", a), 0)])
    batches = _sink_batches(event_rows + dup_rows)
    _insert(backend, db, tables.SINK_BATCHES, batches)
    return Fixture(db=db, events=events, ingested_at=ingested, dead_letters=len(dlq_rows), open_alerts=1,
                   sink_batches=batches, rows=event_rows + dup_rows, flags=flags)


def _project(source: tables.TableSpec, target: tables.TableSpec, row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(row[source.columns.index(c)] for c in target.columns)


def _insert(backend: Backend, db: str, spec: tables.TableSpec, rows: list[tuple[Any, ...]]) -> None:
    backend.insert(f"{db}.{spec.name}", spec.columns, rows)


def _json_msg(topic: str, record: Any) -> FakeMessage:
    return FakeMessage(topic, 0, 0, None, orjson.dumps(record))


def _dead_letter(msg: FakeMessage, kind: str | None, field: str | None) -> FakeMessage:
    rec = {"source_topic": msg.topic, "source_partition": msg.partition, "source_offset": msg.offset,
           "source_timestamp_ms": msg.timestamp, "key_b64": None, "value_b64": None,
           "error_kind": kind or "not_json", "error_field": field, "error": f"fixture: {kind} {field or ''}".strip(),
           "received_at": format_ts(msg.timestamp or 0), "worker": "fixture-worker"}
    if kind == "personal_data":  # the masked number's keyed hash, as the worker keeps it
        rec["personal_data"] = [{"field": field, "type": "mobile", "hmac_sha256": PERSONAL_DATA_HMAC}]
    return _json_msg("call-outcomes.dlq", rec)


def _rate_rows(events: list[CallOutcome]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    rows, stale_rows = [], []
    emitted = format_ts(int(END.timestamp() * 1000))
    for key, c in oracle_counts(events, [60, 300, 3600]).items():
        size, start, dim, value = key.split("|", 3)
        rec = {"window_size_s": int(size), "window_start": format_ts(int(start) * 1000),
               "window_end": format_ts((int(start) + int(size)) * 1000), "dimension": dim, "value": value,
               "attempts": c["attempts"], "connected": c["connected"], **{f: c[f] for f in OUTCOME_COUNT_FIELDS},
               "version": 5, "final": True, "source": "stream", "emitted_at": emitted}
        rows.append(convert.rate_row(_json_msg("hangup-rates", rec), int(END.timestamp())))
        if dim == "branch" and int(start) % 600 == 0:
            # An earlier, wrong version of the same cell: FINAL must hide it.
            stale = {**rec, "version": 2, "attempts": 999, "connected": 999, "hung_up": 999}
            stale_rows.append(convert.rate_row(_json_msg("hangup-rates", stale), int(END.timestamp())))
        if dim == "all" and size == "3600":
            # Reconcile rewrote the hourly totals (same counts, higher version).
            rows.append(convert.rate_row(_json_msg("hangup-rates", {**rec, "version": 9, "source": "reconcile"}),
                                         int(END.timestamp())))
    return rows, stale_rows


def _flag_records(records: list[Any]) -> list[dict[str, Any]]:
    rules = default_rules()
    by_borrower: dict[str, list[tuple[CallOutcome, int]]] = defaultdict(list)
    for offset, rec in enumerate(records, start=1):
        if rec.event is not None:
            by_borrower[rec.event.borrower_id].append((rec.event, offset))
    now_ms = int(END.timestamp() * 1000)
    out: list[dict[str, Any]] = []
    for borrower, evs in sorted(by_borrower.items()):
        _, flags = apply_events(None, borrower, evs, rules, now_ms)
        out.extend(dict(f) for f in flags)
    return out


def _alerts() -> list[dict[str, Any]]:
    base = {"dimension": "branch", "window_size_s": 300, "connected": 40, "hung_up": 22, "hangup_rate": 0.55,
            "wilson_low": 0.40, "wilson_high": 0.69, "baseline_rate": 0.18, "baseline_connected": 900}
    spike_start = START + timedelta(hours=2, minutes=5)
    other_start = START + timedelta(hours=1)

    def alert(value: str, start: datetime, status: str, version: int) -> dict[str, Any]:
        ms = int(start.timestamp() * 1000)
        return {**base, "alert_id": f"branch|{value}|{ms // 1000}", "status": status, "value": value,
                "window_start": format_ts(ms), "window_end": format_ts(ms + 300_000), "version": version,
                "explanation": f"hang-up rate of {value} 55% vs 18% baseline", "emitted_at": format_ts(ms + 300_000)}

    return [alert(SPIKE_BRANCH, spike_start, "firing", 1),
            alert("beijing-haidian", other_start, "firing", 1),
            alert("beijing-haidian", other_start, "resolved", 2)]


def _sink_batches(event_rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The sink's flush log for the stored calls (one call_events flush per second in which
    calls were stored, with their newest event time and the late ones: stored more than
    LATE_AFTER_S after they happened) and a hangup_rates flush per minute."""
    at, occurred, occurred_ms = (tables.CALL_EVENTS.columns.index(c) for c in ("ingested_at", "occurred_at",
                                                                            "occurred_at_ms"))
    per_second: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for r in event_rows:
        per_second[int(r[at])].append(r)
    rows = [("call_events", len(rs), 0, 0.05, t, "sink-1", max(int(r[occurred_ms]) for r in rs),
             sum(1 for r in rs if t - int(r[occurred]) > LATE_AFTER_S)) for t, rs in sorted(per_second.items())]
    for i in range(HOURS * 60):
        t = int(START.timestamp()) + i * 60
        rows.append(("hangup_rates", 400, 0, 0.08, t, "sink-1", (t - 60) * 1000, 0))
    return rows
