"""Contract-breaking messages, one builder per way a producer gets it wrong (the kinds of
schemas/examples/call_outcome/invalid and a few more decode() distinguishes). Each is built
from a real call so that it looks like what a broken upstream system would send, and says
which ContractError kind and field decode() must report for it."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any, Final

import orjson

from hangwatch.schemas.call_outcome import MAX_MESSAGE_BYTES, CallOutcome, format_ts


@dataclasses.dataclass(frozen=True, slots=True)
class Malformed:
    key: bytes | None
    value: bytes
    error_kind: str
    error_field: str | None


# Required fields in the order decode() checks them: dropping any one is reported for that field.
_REQUIRED: Final = ("schema_version", "event_id", "call_id", "borrower_id", "loan_id", "occurred_at", "campaign",
                    "channel", "branch", "outcome", "duration_s", "pre_notified")
# A century ahead: beyond the consumer's clock-skew allowance whatever its clock says, even
# when a backfill lies in the future.
_FUTURE_MS: Final = 100 * 365 * 86_400_000


def _wire(event: CallOutcome, rng: random.Random) -> dict[str, Any]:
    d = event.to_dict()
    # A fresh event_id: a consumer that wrongly accepted this message must not have it hidden
    # by the de-duplication of the valid event it was built from.
    d["event_id"] = f"malformed-{rng.getrandbits(64):016x}"
    return d


def _key(event: CallOutcome) -> bytes:
    return event.borrower_id.encode()


def not_json(ev: CallOutcome, rng: random.Random) -> Malformed:
    text = f"call {ev.call_id} borrower {ev.borrower_id} outcome={ev.outcome} duration={ev.duration_s}"
    return Malformed(_key(ev), text.encode(), "not_json", None)


def not_utf8(ev: CallOutcome, rng: random.Random) -> Malformed:
    # A legacy system writing GBK: the JSON is fine but its branch name is not UTF-8.
    d = _wire(ev, rng)
    d["branch"] = "上海浦东支行"
    return Malformed(_key(ev), orjson.dumps(d).decode().encode("gbk"), "not_utf8", None)


def not_object(ev: CallOutcome, rng: random.Random) -> Malformed:
    return Malformed(_key(ev), orjson.dumps([ev.event_id, ev.outcome, ev.duration_s]), "not_object", None)


def missing_field(ev: CallOutcome, rng: random.Random) -> Malformed:
    d = _wire(ev, rng)
    name = rng.choice(_REQUIRED)
    del d[name]
    return Malformed(_key(ev), orjson.dumps(d), "missing_field", name)


def wrong_type(ev: CallOutcome, rng: random.Random) -> Malformed:
    d = _wire(ev, rng)
    name, bad = rng.choice((
        ("duration_s", str(ev.duration_s)),
        ("pre_notified", "yes" if ev.pre_notified else "no"),
        ("attempt_no", str(ev.attempt_no)),
        ("schema_version", "1"),
        ("occurred_at", ev.occurred_at_ms),  # epoch ms instead of RFC 3339
    ))
    d[name] = bad
    return Malformed(_key(ev), orjson.dumps(d), "wrong_type", name)


def bad_enum(ev: CallOutcome, rng: random.Random) -> Malformed:
    d = _wire(ev, rng)
    name, bad = rng.choice((
        ("outcome", "hangup"),
        ("outcome", "挂断"),
        ("channel", "ivr"),
        ("hangup_stage", "payment_check"),
        ("credit_grade", "D"),
    ))
    d[name] = bad
    return Malformed(_key(ev), orjson.dumps(d), "bad_enum", name)


def bad_timestamp(ev: CallOutcome, rng: random.Random) -> Malformed:
    d = _wire(ev, rng)
    ts = d["occurred_at"]  # 2026-11-27T13:40:12.000Z
    d["occurred_at"] = rng.choice((
        ts[:19],  # no offset
        f"{ts[8:10]}/{ts[5:7]}/{ts[:4]} {ts[11:16]}",  # 27/11/2026 13:40
    ))
    return Malformed(_key(ev), orjson.dumps(d), "bad_timestamp", "occurred_at")


def future_timestamp(ev: CallOutcome, rng: random.Random) -> Malformed:
    d = _wire(ev, rng)
    d["occurred_at"] = format_ts(ev.occurred_at_ms + _FUTURE_MS)
    return Malformed(_key(ev), orjson.dumps(d), "future_timestamp", "occurred_at")


def out_of_range(ev: CallOutcome, rng: random.Random) -> Malformed:
    d = _wire(ev, rng)
    name, bad = rng.choice((("duration_s", -3.0), ("attempt_no", 0)))
    d[name] = bad
    return Malformed(_key(ev), orjson.dumps(d), "out_of_range", name)


def unsupported_version(ev: CallOutcome, rng: random.Random) -> Malformed:
    d = _wire(ev, rng)
    d["schema_version"] = 2
    return Malformed(_key(ev), orjson.dumps(d), "unsupported_version", "schema_version")


def oversized(ev: CallOutcome, rng: random.Random) -> Malformed:
    d = _wire(ev, rng)
    d["note"] = "x" * (MAX_MESSAGE_BYTES + 6 * 1024)
    return Malformed(_key(ev), orjson.dumps(d), "oversized", None)


def empty_key(ev: CallOutcome, rng: random.Random) -> Malformed:
    # A null key (not b""): that is what a producer that forgot the key sends.
    return Malformed(None, orjson.dumps(_wire(ev, rng)), "empty_key", None)


def key_mismatch(ev: CallOutcome, rng: random.Random) -> Malformed:
    return Malformed(b"b-" + f"{rng.getrandbits(40):010x}".encode(), orjson.dumps(_wire(ev, rng)),
                     "key_mismatch", "borrower_id")


def empty_value(ev: CallOutcome, rng: random.Random) -> Malformed:
    d = _wire(ev, rng)
    name = rng.choice(("branch", "campaign", "loan_id"))
    d[name] = ""
    return Malformed(_key(ev), orjson.dumps(d), "empty_value", name)


def personal_data(ev: CallOutcome, rng: random.Random) -> Malformed:
    # An agent's free-text remark that carries the borrower's mobile number (PIPL: refused).
    d = _wire(ev, rng)
    mobile = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
    d["remark"] = f"客户要求改用手机 {mobile[:3]}-{mobile[3:7]}-{mobile[7:]} 联系"
    return Malformed(_key(ev), orjson.dumps(d), "personal_data", "remark")


BUILDERS: Final[tuple[Callable[[CallOutcome, random.Random], Malformed], ...]] = (
    not_json, not_utf8, not_object, missing_field, wrong_type, bad_enum, bad_timestamp, future_timestamp,
    out_of_range, unsupported_version, oversized, empty_key, key_mismatch, empty_value, personal_data,
)
ERROR_KINDS: Final = tuple(b.__name__ for b in BUILDERS)


def build(ev: CallOutcome, rng: random.Random) -> Malformed:
    """One malformed message of a kind drawn uniformly."""
    return BUILDERS[int(rng.random() * len(BUILDERS))](ev, rng)
