"""Wire shapes of the records the stream emits and the sink stores (JSON objects on Kafka).

These TypedDicts are the contract between streams/ and sinks/: the two packages never import
each other, only this module. Field names are the column names of the ClickHouse tables.
Timestamps on the wire are RFC 3339 UTC strings with milliseconds (schemas.call_outcome.format_ts).
"""

from __future__ import annotations

from typing import Final, Literal, NotRequired, TypedDict

from hangwatch.schemas.call_outcome import OUTCOMES

# Dimensions of the rolling rates (docs/contract.md). "all" has the single value "all".
DIMENSIONS: Final = (
    "all",
    "branch",
    "agent_id",
    "campaign",
    "channel",
    "script_version",
    "credit_grade",
    "pre_notified",
    "first_time_borrower",
    "hangup_stage",
)
# Value used for a dimension whose field is null in the event (robot calls have no agent_id,
# connected-and-completed calls have no hangup_stage).
NONE_VALUE: Final = "(none)"
ALERT_DIMENSIONS: Final = ("branch", "campaign", "script_version")

# One count per outcome of the contract, in its order: the layout of the stream's counts
# (streams.core.windows), of RateUpdate below and of the hangup_rates columns.
OUTCOME_COUNT_FIELDS: Final = OUTCOMES


class RateUpdate(TypedDict):
    """topic hangup-rates, key = `key` below. One record per change of a window cell."""

    key: str  # "<window_size_s>|<window_start epoch s>|<dimension>|<value>"
    window_size_s: int
    window_start: str
    window_end: str
    dimension: str
    value: str
    attempts: int
    connected: int
    completed: int
    hung_up: int
    refused: int
    wrong_party: int
    declined: int
    no_answer: int
    busy: int
    voicemail: int
    invalid_number: int
    hangup_rate: float | None  # hung_up / connected, null when connected == 0
    decline_rate: float | None  # declined / attempts
    refusal_rate: float | None  # refused / connected
    contact_rate: float | None  # connected / attempts
    version: int  # strictly increasing per key; the highest version is the truth
    final: bool  # the window is closed (event-time watermark or wall-clock timer)
    source: Literal["stream", "reconcile"]
    emitted_at: str


class EvidenceItem(TypedDict):
    event_id: str
    call_id: str
    occurred_at: str
    outcome: str
    hangup_stage: str | None
    agent_id: str | None
    channel: str
    script_version: str | None


# BorrowerFlag versions: 1 had no schema_version and none of the v2 fields below; 2 added them
# (additively: every v1 field is kept with its meaning). docs/contract.md#borrowerflag-borrower-flags.
FLAG_SCHEMA_VERSION: Final = 2
# The next_action codes, in their order of priority (docs/contract.md, "Next action").
NEXT_ACTIONS: Final = ("escalate_branch_visit", "switch_to_human", "pre_notify_sms", "call_in_best_slot",
                       "manual_review", "pause_until_next_day", "reschedule_outside_quiet_hours", "none")


class FlagThreshold(TypedDict):
    """The rule threshold the transition crossed: `count op limit` within `window_ms`, e.g.
    negative_outcomes 3 >= 3 within 7 days. window_ms = 86,400,000 for the per-local-day rules."""

    metric: Literal["negative_outcomes", "unanswered_attempts", "quiet_hours_calls"]
    count: int
    op: Literal[">=", ">"]
    limit: int
    window_ms: int


class FlagFacts(TypedDict):
    """Structured facts of a flag transition, all over its evidence calls (v2)."""

    calls: int
    outcome_counts: dict[str, int]  # outcome -> calls, in order of first sight
    hangup_stages: list[str]  # distinct stages seen, in order of first sight
    channel_counts: dict[str, int]  # channel (robot/human) -> calls, in order of first sight
    first_call_at: str
    last_call_at: str
    pre_notified: bool  # at least one evidence call was pre-notified
    pre_notified_calls: int
    bad_hour_calls: int  # calls in the bad local hours (docs/contract.md, "Next action")
    threshold: FlagThreshold | None  # null for `resolved`


class NextAction(TypedDict):
    """A structured suggestion (codes and integer parameters, no prose; surfaces render it)."""

    code: str  # one of NEXT_ACTIONS
    params: dict[str, int]
    also: list[str]  # the other codes that applied, in priority order


class BorrowerFlag(TypedDict):
    """topic borrower-flags, key = borrower_id. One record per flag transition. v2: a v1
    consumer reads it unchanged; a v2 reader treats a record without schema_version as v1."""

    flag_id: str  # deterministic: same rule + borrower + episode -> same id
    borrower_id: str
    loan_id: str
    rule_id: str
    rule_version: int
    severity: Literal["low", "medium", "high"]
    status: Literal["raised", "escalated", "resolved"]
    evidence: list[EvidenceItem]
    first_event_at: str
    last_event_at: str
    explanation: str
    emitted_at: str
    schema_version: int  # 2 (FLAG_SCHEMA_VERSION); absent in v1 records
    facts: FlagFacts  # v2
    next_action: NextAction  # v2


class HangupAlert(TypedDict):
    """topic hangup-alerts, key = alert_id. A firing record, later a resolved one."""

    alert_id: str  # dedupe key: "<dimension>|<value>|<first window start epoch s>"
    status: Literal["firing", "resolved"]
    dimension: str
    value: str
    window_size_s: int
    window_start: str
    window_end: str
    connected: int
    hung_up: int
    hangup_rate: float
    wilson_low: float
    wilson_high: float
    baseline_rate: float
    baseline_connected: int
    explanation: str
    version: int  # 1 = firing, 2 = resolved
    emitted_at: str


class DeadLetter(TypedDict):
    """topic call-outcomes.dlq, key = the original key (or null). Original bytes in base64,
    with every mobile and resident ID number masked (streams/dead_letters.py)."""

    source_topic: str
    source_partition: int
    source_offset: int
    source_timestamp_ms: int | None
    key_b64: str | None
    value_b64: str | None
    error_kind: str  # stable code, e.g. not_json, missing_field, bad_enum (schemas.call_outcome)
    error_field: str | None
    error: str  # human-readable, says what was wrong
    received_at: str
    worker: str
    # Only when personal data was masked in it (additive, docs/contract.md#dead-letters).
    personal_data: NotRequired[list[PersonalDataHash]]


class PersonalDataHash(TypedDict):
    """A masked mobile or resident ID number of a dead letter: where (field path, null when
    only the byte scan saw it), what, and HMAC-SHA256 (hex, key privacy.hash_key; null
    without a key) of its canonical form (11 digits; 18 characters with upper-case X)."""

    field: str | None
    type: Literal["mobile", "resident_id"]
    hmac_sha256: str | None


def rate_key(window_size_s: int, window_start_s: int, dimension: str, value: str) -> str:
    return f"{window_size_s}|{window_start_s}|{dimension}|{value}"


def _check_count_layout() -> None:
    """RateUpdate states the counts field by field (a TypedDict cannot be generated); it must
    list them in the contract's order, which the stream's count tuples follow."""
    stated = tuple(f for f in RateUpdate.__annotations__ if f in OUTCOMES)
    if stated != OUTCOME_COUNT_FIELDS:
        raise RuntimeError(f"RateUpdate lists the outcome counts as {stated}, the contract as {OUTCOME_COUNT_FIELDS}")


_check_count_layout()
