"""CallOutcome v1: the event contract of topic `call-outcomes` (see docs/contract.md).

Decoding is the hot path of the whole pipeline. A message that satisfies the contract is
decoded by msgspec into a struct that states the field types, enums and bounds (C, one pass:
~2 us per event into the CallOutcome Struct, ~8 by hand); anything msgspec does not accept (a
contract error, or a valid message with unknown extra fields) goes through the hand-written
path over orjson, one pass over the known fields, which reports every problem precisely (field
and what was wrong) through `ContractError`; the worker turns that into a dead-letter record.
Both paths give the same result for every input (tests/schemas check it on the examples and on
generated mutations). The JSON Schema in schemas/json/call_outcome.v1.json states the same
contract for other languages; tests check the two agree on every example.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import msgspec
import orjson

from hangwatch.schemas import personal_data
from hangwatch.schemas.personal_data import Finding

SCHEMA_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 64 * 1024
# An event may claim to have happened at most this far in the future (clock skew allowance).
MAX_FUTURE_SKEW_MS: Final = 24 * 3600 * 1000

OUTCOMES: Final = (
    "completed",
    "hung_up",
    "refused",
    "wrong_party",
    "declined",
    "no_answer",
    "busy",
    "voicemail",
    "invalid_number",
)
CONNECTED_OUTCOMES: Final = frozenset({"completed", "hung_up", "refused", "wrong_party"})
NEGATIVE_OUTCOMES: Final = frozenset({"hung_up", "refused", "declined"})
UNANSWERED_OUTCOMES: Final = frozenset({"no_answer", "busy", "voicemail", "declined"})
CHANNELS: Final = ("human", "robot")
HANGUP_STAGES: Final = ("greeting", "identity_check", "income_check", "collateral_check", "closing")
CREDIT_GRADES: Final = ("AAA", "AA", "A", "B", "C", "unrated")

_OUTCOME_SET = frozenset(OUTCOMES)
_CHANNEL_SET = frozenset(CHANNELS)
_STAGE_SET = frozenset(HANGUP_STAGES)
_GRADE_SET = frozenset(CREDIT_GRADES)


class ContractError(ValueError):
    """A message that does not satisfy the contract. `kind` is a stable machine-readable code
    (used as a metric label and stored in the dead-letter table); `field` is the JSON field at
    fault, if any; the message says what was wrong in words."""

    def __init__(self, kind: str, message: str, field: str | None = None,
                 findings: tuple[Finding, ...] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field
        # kind personal_data: what was found where (the dead letter masks and hashes them)
        self.findings = findings

    def __str__(self) -> str:
        msg = self.args[0]
        return f"{self.field}: {msg}" if self.field else str(msg)


# A msgspec Struct rather than a frozen dataclass: the same immutable, typed record, built in C
# (~0.25 us against ~2.4 us for a frozen dataclass, whose __init__ sets every field through
# object.__setattr__), on the hot path once per event. gc=False: it holds only JSON values, which
# cannot form reference cycles, so the cyclic GC need not track millions of them.
class CallOutcome(msgspec.Struct, frozen=True, gc=False):
    event_id: str
    call_id: str
    borrower_id: str
    loan_id: str
    occurred_at_ms: int  # event time, Unix epoch milliseconds (UTC)
    campaign: str
    channel: str
    agent_id: str | None
    branch: str
    outcome: str
    hangup_stage: str | None
    duration_s: float
    attempt_no: int | None
    pre_notified: bool
    credit_grade: str | None
    first_time_borrower: bool | None
    script_version: str | None
    schema_version: int = SCHEMA_VERSION
    # Unknown fields are kept (additive evolution within v1), never rejected.
    extra: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def connected(self) -> bool:
        return self.outcome in CONNECTED_OUTCOMES

    def to_dict(self) -> dict[str, Any]:
        """The wire form (JSON object) of this event; inverse of `from_dict`."""
        d: dict[str, Any] = {
            "event_id": self.event_id,
            "schema_version": self.schema_version,
            "call_id": self.call_id,
            "borrower_id": self.borrower_id,
            "loan_id": self.loan_id,
            "occurred_at": format_ts(self.occurred_at_ms),
            "campaign": self.campaign,
            "channel": self.channel,
            "agent_id": self.agent_id,
            "branch": self.branch,
            "outcome": self.outcome,
            "hangup_stage": self.hangup_stage,
            "duration_s": self.duration_s,
            "attempt_no": self.attempt_no,
            "pre_notified": self.pre_notified,
            "credit_grade": self.credit_grade,
            "first_time_borrower": self.first_time_borrower,
            "script_version": self.script_version,
        }
        d.update(self.extra)
        return d

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


KNOWN_FIELDS: Final = frozenset(
    {
        "event_id",
        "schema_version",
        "call_id",
        "borrower_id",
        "loan_id",
        "occurred_at",
        "campaign",
        "channel",
        "agent_id",
        "branch",
        "outcome",
        "hangup_stage",
        "duration_s",
        "attempt_no",
        "pre_notified",
        "credit_grade",
        "first_time_borrower",
        "script_version",
    }
)


# Cached: the worker formats the same few window bounds and batch times over and over (every
# rate update carries its window's start and end and the batch's emitted_at).
@functools.lru_cache(maxsize=16_384)
def format_ts(ms: int) -> str:
    """RFC 3339 in UTC with millisecond precision, e.g. 2026-11-27T13:40:00.000Z."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_ts(value: str, field: str = "occurred_at") -> int:
    """Parse an RFC 3339 timestamp that carries an offset; return epoch milliseconds."""
    if not isinstance(value, str):
        raise ContractError("wrong_type", f"expected an RFC 3339 string, got {_tname(value)}", field)
    if len(value) < 20 or value[10] not in "Tt ":
        raise ContractError("bad_timestamp", f"not an RFC 3339 timestamp: {value[:40]!r}", field)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ContractError("bad_timestamp", f"not an RFC 3339 timestamp: {value[:40]!r}", field) from None
    if dt.tzinfo is None:
        raise ContractError("bad_timestamp", f"timestamp has no UTC offset: {value[:40]!r}", field)
    return round(dt.timestamp() * 1000)


def _tname(v: Any) -> str:
    return "null" if v is None else {bool: "boolean", int: "integer", float: "number", str: "string",
                                     list: "array", dict: "object"}.get(type(v), type(v).__name__)


def _req_str(d: dict[str, Any], name: str) -> str:
    v = d.get(name, _MISSING)
    if v is _MISSING:
        raise ContractError("missing_field", "required field is missing", name)
    if not isinstance(v, str):
        raise ContractError("wrong_type", f"expected a string, got {_tname(v)}", name)
    if not v:
        raise ContractError("empty_value", "must not be empty", name)
    return v


def _opt_str(d: dict[str, Any], name: str) -> str | None:
    v = d.get(name)
    if v is None:
        return None
    if not isinstance(v, str):
        raise ContractError("wrong_type", f"expected a string or null, got {_tname(v)}", name)
    return v


def _enum(d: dict[str, Any], name: str, allowed: frozenset[str], *, required: bool) -> str | None:
    v = d.get(name, _MISSING)
    if v is _MISSING or v is None:
        if required:
            raise ContractError("missing_field", "required field is missing", name)
        return None
    if not isinstance(v, str):
        raise ContractError("wrong_type", f"expected a string, got {_tname(v)}", name)
    if v not in allowed:
        raise ContractError("bad_enum", f"unknown value {v[:40]!r}; expected one of {sorted(allowed)}", name)
    return v


def _bool(d: dict[str, Any], name: str, *, required: bool) -> bool | None:
    v = d.get(name, _MISSING)
    if v is _MISSING or v is None:
        if required:
            raise ContractError("missing_field", "required field is missing", name)
        return None
    if not isinstance(v, bool):
        raise ContractError("wrong_type", f"expected a boolean, got {_tname(v)}", name)
    return v


_MISSING: Final = object()


def _event_time(value: Any, now_ms: int | None) -> int:
    """occurred_at as epoch ms: an RFC 3339 timestamp at most MAX_FUTURE_SKEW_MS ahead of now."""
    occurred_at_ms = parse_ts(value)
    now = now_ms if now_ms is not None else int(datetime.now(tz=UTC).timestamp() * 1000)
    if occurred_at_ms > now + MAX_FUTURE_SKEW_MS:
        raise ContractError("future_timestamp", f"{value} is more than 1 day in the future", "occurred_at")
    return occurred_at_ms


def from_dict(d: Any, *, now_ms: int | None = None) -> CallOutcome:
    """Validate a decoded JSON value against CallOutcome v1, personal data included."""
    event = _from_dict(d, now_ms=now_ms)
    check_personal_data(d)
    return event


def _from_dict(d: Any, *, now_ms: int | None = None) -> CallOutcome:
    """The contract's checks of one JSON value, all but the personal-data one."""
    if not isinstance(d, dict):
        raise ContractError("not_object", f"expected a JSON object, got {_tname(d)}")
    sv = d.get("schema_version", _MISSING)
    if sv is _MISSING:
        raise ContractError("missing_field", "required field is missing", "schema_version")
    if type(sv) is not int:
        raise ContractError("wrong_type", f"expected an integer, got {_tname(sv)}", "schema_version")
    if sv != SCHEMA_VERSION:
        raise ContractError("unsupported_version", f"unsupported schema_version {sv}; this consumer reads 1",
                            "schema_version")
    event_id = _req_str(d, "event_id")
    call_id = _req_str(d, "call_id")
    borrower_id = _req_str(d, "borrower_id")
    loan_id = _req_str(d, "loan_id")
    if "occurred_at" not in d:
        raise ContractError("missing_field", "required field is missing", "occurred_at")
    occurred_at_ms = _event_time(d["occurred_at"], now_ms)
    campaign = _req_str(d, "campaign")
    channel = _enum(d, "channel", _CHANNEL_SET, required=True)
    agent_id = _opt_str(d, "agent_id")
    branch = _req_str(d, "branch")
    outcome = _enum(d, "outcome", _OUTCOME_SET, required=True)
    hangup_stage = _enum(d, "hangup_stage", _STAGE_SET, required=False)
    dur = d.get("duration_s", _MISSING)
    if dur is _MISSING:
        raise ContractError("missing_field", "required field is missing", "duration_s")
    if type(dur) not in (int, float):
        raise ContractError("wrong_type", f"expected a number, got {_tname(dur)}", "duration_s")
    if not math.isfinite(dur) or dur < 0:
        raise ContractError("out_of_range", f"must be a finite number >= 0, got {dur}", "duration_s")
    attempt = d.get("attempt_no")
    if attempt is not None:
        if type(attempt) is not int:
            raise ContractError("wrong_type", f"expected an integer, got {_tname(attempt)}", "attempt_no")
        if attempt < 1:
            raise ContractError("out_of_range", f"must be >= 1, got {attempt}", "attempt_no")
    pre_notified = _bool(d, "pre_notified", required=True)
    credit_grade = _enum(d, "credit_grade", _GRADE_SET, required=False)
    first_time = _bool(d, "first_time_borrower", required=False)
    script_version = _opt_str(d, "script_version")
    extra = {} if d.keys() <= KNOWN_FIELDS else {k: v for k, v in d.items() if k not in KNOWN_FIELDS}
    return CallOutcome(
        event_id=event_id,
        call_id=call_id,
        borrower_id=borrower_id,
        loan_id=loan_id,
        occurred_at_ms=occurred_at_ms,
        campaign=campaign,
        channel=channel,  # type: ignore[arg-type]  # required=True never returns None
        agent_id=agent_id,
        branch=branch,
        outcome=outcome,  # type: ignore[arg-type]
        hangup_stage=hangup_stage,
        duration_s=float(dur),
        attempt_no=attempt,
        pre_notified=pre_notified,  # type: ignore[arg-type]
        credit_grade=credit_grade,
        first_time_borrower=first_time,
        script_version=script_version,
        schema_version=sv,
        extra=extra,
    )


_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
# The contract as msgspec checks it (the same rules as from_dict). Unknown fields are refused
# here only so that such messages take the path that keeps them in `extra`.
_Wire = msgspec.defstruct("_Wire", [
    ("schema_version", Literal[SCHEMA_VERSION]),
    ("event_id", _NonEmpty), ("call_id", _NonEmpty), ("borrower_id", _NonEmpty), ("loan_id", _NonEmpty),
    ("occurred_at", str), ("campaign", _NonEmpty),
    ("channel", Literal[CHANNELS]),  # type: ignore[valid-type]
    ("agent_id", str | None, None), ("branch", _NonEmpty),
    ("outcome", Literal[OUTCOMES]),  # type: ignore[valid-type]
    ("hangup_stage", Literal[HANGUP_STAGES] | None, None),  # type: ignore[valid-type]
    ("duration_s", Annotated[float, msgspec.Meta(ge=0)]),
    ("attempt_no", Annotated[int, msgspec.Meta(ge=1)] | None, None),
    ("pre_notified", bool),
    ("credit_grade", Literal[CREDIT_GRADES] | None, None),  # type: ignore[valid-type]
    ("first_time_borrower", bool | None, None), ("script_version", str | None, None),
], forbid_unknown_fields=True, kw_only=True)
_wire_decoder = msgspec.json.Decoder(_Wire)


def _fast(value: bytes, now_ms: int | None) -> CallOutcome | None:
    """The event if msgspec accepts the message, else None (the precise path decides)."""
    try:
        w: Any = _wire_decoder.decode(value)
    except (msgspec.DecodeError, UnicodeDecodeError):  # DecodeError covers ValidationError
        return None
    if not math.isfinite(w.duration_s):
        return None
    # Every other field is valid, so the only errors left are the timestamp's: the same
    # function as from_dict's.
    occurred_at_ms = _event_time(w.occurred_at, now_ms)
    return CallOutcome(w.event_id, w.call_id, w.borrower_id, w.loan_id, occurred_at_ms, w.campaign, w.channel,
                       w.agent_id, w.branch, w.outcome, w.hangup_stage, float(w.duration_s), w.attempt_no,
                       w.pre_notified, w.credit_grade, w.first_time_borrower, w.script_version, SCHEMA_VERSION, {})


def decode(value: bytes | None, key: bytes | None = None, *, now_ms: int | None = None) -> CallOutcome:
    """Decode one Kafka record of `call-outcomes` (value bytes, key bytes) into a CallOutcome.

    Raises ContractError for anything that breaks the contract, including an empty key, a key
    that differs from borrower_id (the topic is partitioned by borrower) and personal data
    (kind personal_data). Without ingest pseudonymisation; `Decoder` adds it."""
    if value is None:  # the checks of _validated, inline: this is the hot path
        raise ContractError("empty_value", "message has no value (tombstone)")
    if len(value) > MAX_MESSAGE_BYTES:
        raise ContractError("oversized", f"message is {len(value)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    if not key:
        raise ContractError("empty_key", "message key is empty; it must be the borrower_id")
    event = _fast(value, now_ms) or _decode_precise(value, now_ms)
    if _candidates(value):
        _check_raw(value, event, _EVENT_ID)
    if key.decode("utf-8", "replace") != event.borrower_id:
        raise ContractError("key_mismatch", "message key must equal borrower_id", "borrower_id")
    return event


def _validated(value: bytes | None, key: bytes | None, now_ms: int | None) -> tuple[bytes, bytes, CallOutcome]:
    """Every check but personal data and the key's; the value and key, known to be bytes."""
    if value is None:
        raise ContractError("empty_value", "message has no value (tombstone)")
    if len(value) > MAX_MESSAGE_BYTES:
        raise ContractError("oversized", f"message is {len(value)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    if not key:
        raise ContractError("empty_key", "message key is empty; it must be the borrower_id")
    event = _fast(value, now_ms)
    if event is None:
        event = _decode_precise(value, now_ms)
    return value, key, event


# ---- personal data (schemas/personal_data.py; docs/privacy.md) ----------------------------

_EVENT_ID: Final = frozenset({"event_id"})
_candidates: Final = personal_data.candidates
_PERSONAL_DATA_WORDS: Final = {
    personal_data.MOBILE: "a mobile phone number",
    personal_data.RESIDENT_ID: "a resident ID number",
}


def check_personal_data(d: dict[str, Any], skip: frozenset[str] = _EVENT_ID) -> None:
    """Raise ContractError(personal_data) if any value of the event object d (but the fields
    in skip: event_id, and the fields pseudonymised at ingest) holds a mobile or resident ID
    number; field names, nested objects, arrays and integers included."""
    found: list[Finding] = []
    for k, v in d.items():
        if k in skip:
            continue
        if personal_data.text_candidate(k):
            found.extend(Finding(k, t, k[a:b], n) for a, b, t, n in personal_data.find_in_text(k))
        personal_data.find_in_value(v, k, found)
    if found:
        first = found[0]
        raise ContractError(
            "personal_data",
            f"holds {_PERSONAL_DATA_WORDS[first.type]}; raw phone and ID numbers are forbidden "
            f"({len(found)} found; send a pseudonymous id)",
            personal_data.mask_text(first.field) if first.field else None, tuple(found))


def _check_raw(value: bytes, event: CallOutcome, skip: frozenset[str]) -> None:
    """check_personal_data over the message as sent (every field, occurred_at's text too)."""
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError:  # msgspec accepted what orjson refuses: check what is kept
        d = {**event.to_dict(), "occurred_at": None}
    check_personal_data(d, skip)


# Top-level fields that may be pseudonymised at ingest: identifiers. Enums, numbers, booleans
# and the event time are not identifiers (and would no longer validate).
PSEUDONYMISABLE: Final = frozenset({"call_id", "borrower_id", "loan_id", "agent_id"})
NOT_PSEUDONYMISABLE: Final = KNOWN_FIELDS - PSEUDONYMISABLE


class Decoder:
    """`decode` with the deployment's ingest privacy options, built once per process (the
    worker's partition stage and the sink each hold one) so that no event looks a setting up.

    pseudonymise: top-level fields (identifiers of PSEUDONYMISABLE, or unknown extra fields)
    whose string or integer values are replaced by `personal_data.pseudonym(key, value)` after
    validation and BEFORE the personal-data check, for producers that can only send raw
    identifiers. The message key is still compared with the borrower_id as sent."""

    __slots__ = ("_extra", "_fields", "_key", "_known", "_skip")

    def __init__(self, pseudonymise: Iterable[str] = (), key: bytes | None = None) -> None:
        fields = frozenset(pseudonymise)
        bad = sorted(fields & NOT_PSEUDONYMISABLE)
        if bad:
            raise ValueError(f"cannot pseudonymise {bad}: only identifiers ({sorted(PSEUDONYMISABLE)}) "
                             "and extra fields")
        if fields and not key:
            raise ValueError("pseudonymisation needs a key")
        self._fields = fields
        self._key = key or b""
        self._known = tuple(sorted(fields & PSEUDONYMISABLE))
        self._extra = frozenset(fields - PSEUDONYMISABLE)
        self._skip = _EVENT_ID | fields

    @property
    def pseudonymised(self) -> frozenset[str]:
        return self._fields

    def __call__(self, value: bytes | None, key: bytes | None = None, *, now_ms: int | None = None) -> CallOutcome:
        if not self._fields:
            return decode(value, key, now_ms=now_ms)
        value, key, event = _validated(value, key, now_ms)
        sent_borrower_id = event.borrower_id
        event = self._pseudonymise(event)
        if personal_data.candidates(value):
            _check_raw(value, event, self._skip)
        if key.decode("utf-8", "replace") != sent_borrower_id:
            raise ContractError("key_mismatch", "message key must equal borrower_id", "borrower_id")
        return event

    def _pseudonymise(self, event: CallOutcome) -> CallOutcome:
        changes: dict[str, Any] = {}
        for name in self._known:
            v = getattr(event, name)
            if v is not None:
                changes[name] = personal_data.pseudonym(self._key, v)
        if self._extra and event.extra.keys() & self._extra:
            extra = dict(event.extra)
            for name in self._extra & extra.keys():
                v = extra[name]
                if isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)):
                    extra[name] = personal_data.pseudonym(self._key, str(v))
            changes["extra"] = extra
        return msgspec.structs.replace(event, **changes) if changes else event


def _decode_precise(value: bytes, now_ms: int | None) -> CallOutcome:
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as ue:
            raise ContractError("not_utf8", f"value is not valid UTF-8 ({ue.reason} at byte {ue.start})") from None
        raise ContractError("not_json", f"value is not JSON: {e}") from None
    return _from_dict(raw, now_ms=now_ms)
