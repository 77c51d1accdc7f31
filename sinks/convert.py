"""Kafka messages -> table rows (tuples in the column order of sinks.tables).

call-outcomes messages are decoded with the contract's own decoder; a message that breaks
the contract raises InvalidEvent and is only counted here, because the worker publishes it
to the DLQ topic (and the sink stores that record in dead_letters). Records of the other
topics are the stream's own output (schemas.records); one that cannot be read raises
RowError and goes to dead_letters with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

import orjson

from hangwatch.schemas.call_outcome import ContractError, Decoder, parse_ts
from hangwatch.schemas.records import OUTCOME_COUNT_FIELDS
from hangwatch.sinks.validate import RowError


class Message(Protocol):
    """What the converters need of a Kafka record (aiokafka's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int | None: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class InvalidEvent(Exception):
    """A call-outcomes message that breaks the contract (the worker dead-letters it)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


Converter = Callable[[Message, int], tuple[Any, ...]]

# The contract decoder with the deployment's ingest pseudonymisation (settings.privacy): the
# sink must store the events the worker counts, under the same pseudonyms. Set once at start.
_decode = Decoder()


def use_decoder(decoder: Decoder) -> None:
    global _decode
    _decode = decoder


def call_event_row(msg: Message, now_s: int) -> tuple[Any, ...]:
    try:
        e = _decode(msg.value, msg.key)
    except ContractError as err:
        raise InvalidEvent(err.kind) from err
    ftb = e.first_time_borrower
    return (
        e.event_id, e.call_id, e.borrower_id, e.loan_id, e.occurred_at_ms // 1000, e.occurred_at_ms, e.campaign,
        e.channel, e.agent_id, e.branch, e.outcome, e.hangup_stage, e.duration_s, e.attempt_no, int(e.pre_notified),
        e.credit_grade, None if ftb is None else int(ftb), e.script_version, e.schema_version,
        orjson.dumps(e.extra).decode() if e.extra else "{}", msg.partition, msg.offset, now_s,
    )


# --- typed field access for the stream's records ----------------------------------------

def _record(msg: Message) -> dict[str, Any]:
    if msg.value is None:
        raise RowError(None, "message has no value (tombstone)")
    try:
        d = orjson.loads(msg.value)
    except orjson.JSONDecodeError as e:
        raise RowError(None, f"value is not JSON: {e}") from None
    if not isinstance(d, dict):
        raise RowError(None, "value is not a JSON object")
    return d


def _get(d: dict[str, Any], f: str, types: tuple[type, ...], what: str, *, optional: bool = False) -> Any:
    if f not in d:
        if optional:
            return None
        raise RowError(f, "required field is missing")
    v = d[f]
    if v is None and optional:
        return None
    if type(v) not in types:
        raise RowError(f, f"expected {what}, got {type(v).__name__}")
    return v


def _str(d: dict[str, Any], f: str) -> str:
    return _get(d, f, (str,), "a string")  # type: ignore[no-any-return]


def _opt_str(d: dict[str, Any], f: str) -> str | None:
    return _get(d, f, (str,), "a string or null", optional=True)  # type: ignore[no-any-return]


def _int(d: dict[str, Any], f: str) -> int:
    return _get(d, f, (int,), "an integer")  # type: ignore[no-any-return]


def _num(d: dict[str, Any], f: str) -> float:
    return float(_get(d, f, (int, float), "a number"))


def _bool(d: dict[str, Any], f: str) -> int:
    return int(_get(d, f, (bool,), "a boolean"))


def _ts_ms(d: dict[str, Any], f: str) -> int:
    try:
        return parse_ts(_str(d, f), f)
    except ContractError as e:
        raise RowError(f, str(e.args[0])) from None


def _ts(d: dict[str, Any], f: str) -> int:
    return _ts_ms(d, f) // 1000


def rate_row(msg: Message, now_s: int) -> tuple[Any, ...]:
    d = _record(msg)
    counts = tuple(_int(d, f) for f in OUTCOME_COUNT_FIELDS)
    return (
        _int(d, "window_size_s"), _ts(d, "window_start"), _ts(d, "window_end"), _str(d, "dimension"),
        _str(d, "value"), _int(d, "attempts"), _int(d, "connected"), *counts, _int(d, "version"),
        _bool(d, "final"), _str(d, "source"), _ts(d, "emitted_at"), now_s,
    )


# The evidence arrays of borrower_flags (migration 0008): one per EvidenceItem field, in the
# column order of tables.BORROWER_FLAGS; optional fields are '' when absent.
_EVIDENCE_STRINGS: Final = ("event_id", "call_id")
_EVIDENCE_OPTIONAL: Final = ("hangup_stage", "agent_id", "channel", "script_version")


def _evidence_arrays(evidence: list[Any]) -> tuple[list[Any], ...]:
    items = []
    for i, e in enumerate(evidence):
        if not isinstance(e, dict):
            raise RowError("evidence", f"evidence[{i}] is not an object")
        try:
            item = (*(_str(e, f) for f in _EVIDENCE_STRINGS), _ts(e, "occurred_at"), _str(e, "outcome"),
                    *(_opt_str(e, f) or "" for f in _EVIDENCE_OPTIONAL))
        except RowError as err:
            raise RowError("evidence", f"evidence[{i}].{err.column}: {err.message}") from None
        items.append(item)
    return tuple(list(col) for col in zip(*items, strict=True)) if items else tuple([] for _ in range(8))


def _counts(d: dict[str, Any], f: str) -> tuple[list[str], list[int]]:
    """A {name: count} object of the v2 facts as (names, counts) arrays."""
    m = _get(d, f, (dict,), "an object")
    for k, v in m.items():
        if type(v) is not int or v < 0:
            raise RowError(f, f"{k}: expected a count, got {v!r}")
    return list(m), list(m.values())


def _flag_v2(d: dict[str, Any]) -> tuple[Any, ...]:
    """The BorrowerFlag v2 columns (migration 0011); their defaults for a v1 record."""
    version = d.get("schema_version", 1)
    if type(version) is not int or version < 1:
        raise RowError("schema_version", f"expected a positive integer, got {version!r}")
    if version < 2:
        return (version, [], [], [], [], [], 0, 0, "", "", 0, 0, 0, "", [], [], [])
    try:
        facts = _get(d, "facts", (dict,), "an object")
        outcomes, outcome_counts = _counts(facts, "outcome_counts")
        channels, channel_counts = _counts(facts, "channel_counts")
        stages = _get(facts, "hangup_stages", (list,), "a list")
        if not all(type(s) is str for s in stages):
            raise RowError("hangup_stages", "expected strings")
        th = _get(facts, "threshold", (dict,), "an object or null", optional=True)
        threshold = (("", "", 0, 0, 0) if th is None else
                     (_str(th, "metric"), _str(th, "op"), _int(th, "count"), _int(th, "limit"), _int(th, "window_ms")))
        facts_cols = (outcomes, outcome_counts, stages, channels, channel_counts, _int(facts, "pre_notified_calls"),
                      _int(facts, "bad_hour_calls"), *threshold)
    except RowError as err:
        raise RowError("facts", f"facts.{err.column}: {err.message}") from None
    try:
        action = _get(d, "next_action", (dict,), "an object")
        names, values = _counts(action, "params")
        also = _get(action, "also", (list,), "a list")
        if not all(type(c) is str for c in also):
            raise RowError("also", "expected strings")
        action_cols = (_str(action, "code"), names, values, also)
    except RowError as err:
        raise RowError("next_action", f"next_action.{err.column}: {err.message}") from None
    return (version, *facts_cols, *action_cols)


def flag_row(msg: Message, now_s: int) -> tuple[Any, ...]:
    d = _record(msg)
    evidence = _get(d, "evidence", (list,), "a list")
    emitted_ms = _ts_ms(d, "emitted_at")
    return (
        _str(d, "flag_id"), _str(d, "borrower_id"), _str(d, "loan_id"), _str(d, "rule_id"), _int(d, "rule_version"),
        _str(d, "severity"), _str(d, "status"), orjson.dumps(evidence).decode(), len(evidence),
        _ts(d, "first_event_at"), _ts(d, "last_event_at"), _str(d, "explanation"), emitted_ms // 1000, emitted_ms,
        now_s, *_evidence_arrays(evidence), *_flag_v2(d),
    )


def alert_row(msg: Message, now_s: int) -> tuple[Any, ...]:
    d = _record(msg)
    return (
        _str(d, "alert_id"), _str(d, "status"), _str(d, "dimension"), _str(d, "value"), _int(d, "window_size_s"),
        _ts(d, "window_start"), _ts(d, "window_end"), _int(d, "connected"), _int(d, "hung_up"),
        _num(d, "hangup_rate"), _num(d, "wilson_low"), _num(d, "wilson_high"), _num(d, "baseline_rate"),
        _int(d, "baseline_connected"), _str(d, "explanation"), _int(d, "version"), _ts(d, "emitted_at"), now_s,
    )


def dead_letter_record_row(msg: Message, now_s: int) -> tuple[Any, ...]:
    d = _record(msg)
    return (
        _str(d, "source_topic"), _int(d, "source_partition"), _int(d, "source_offset"),
        _get(d, "source_timestamp_ms", (int,), "an integer or null", optional=True),
        _opt_str(d, "key_b64"), _opt_str(d, "value_b64"), _str(d, "error_kind"), _opt_str(d, "error_field"),
        _str(d, "error"), _ts(d, "received_at"), _str(d, "worker"), now_s, *_personal_data(d),
    )


def _personal_data(d: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """The masked matches of a personal_data dead letter as three parallel arrays (type, field
    path or '', keyed hash or ''); empty for the other kinds."""
    found = _get(d, "personal_data", (list,), "a list or null", optional=True) or []
    if not all(isinstance(m, dict) for m in found):
        raise RowError("personal_data", "expected a list of objects")
    return ([str(m.get("type") or "") for m in found], [str(m.get("field") or "") for m in found],
            [str(m.get("hmac_sha256") or "") for m in found])


CONVERTERS: Final[dict[str, Converter]] = {
    "call_events": call_event_row,
    "hangup_rates": rate_row,
    "borrower_flags": flag_row,
    "hangup_alerts": alert_row,
    "dead_letters": dead_letter_record_row,
}
