"""SQL building blocks shared by the catalogue's queries (and reconciliation): outcome sets
rendered from the contract, rates derived from counts, and the one way to read the current
state of a versioned row (argMax over its version column, exact before merges and across
partitions; never FINAL, whose result depends on the partition key and which reads every
part single-file at a time on old servers)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from hangwatch.schemas.call_outcome import CONNECTED_OUTCOMES, HANGUP_STAGES, OUTCOMES
from hangwatch.schemas.records import DIMENSIONS, NONE_VALUE
from hangwatch.sinks.sql import literal


def outcome_list(outcomes: Iterable[str]) -> str:
    """An SQL IN-list of outcomes, in the contract's order (stable text for any set)."""
    chosen = set(outcomes)
    unknown = chosen - set(OUTCOMES)
    if unknown:
        raise ValueError(f"not outcomes of the contract: {sorted(unknown)}")
    return literal(tuple(o for o in OUTCOMES if o in chosen))


CONNECTED_LIST: Final = outcome_list(CONNECTED_OUTCOMES)
STAGE_ARRAY: Final = "[" + ", ".join(literal(s) for s in HANGUP_STAGES) + "]"

# Each dimension's value as the stream renders it (docs/contract.md, schemas/records.py):
# null -> "(none)", booleans -> "true"/"false".
_NONE = literal(NONE_VALUE)
DIMENSION_SQL: Final = {
    "all": "'all'",
    "branch": "toString(branch)",
    "agent_id": f"ifNull(toString(agent_id), {_NONE})",
    "campaign": "toString(campaign)",
    "channel": "toString(channel)",
    "script_version": f"ifNull(toString(script_version), {_NONE})",
    "credit_grade": f"ifNull(toString(credit_grade), {_NONE})",
    "pre_notified": "if(pre_notified = 1, 'true', 'false')",
    "first_time_borrower": f"multiIf(isNull(first_time_borrower), {_NONE}, first_time_borrower = 1, 'true', 'false')",
    "hangup_stage": f"ifNull(toString(hangup_stage), {_NONE})",
}
if tuple(DIMENSION_SQL) != tuple(DIMENSIONS):  # the contract gained or lost a dimension
    raise RuntimeError(f"the catalogue knows dimensions {list(DIMENSION_SQL)}, the contract has {list(DIMENSIONS)}")


# --- rates from stored window counts (hangup_rates, read through current_cells) -------
ROUNDED_RATES: Final = """if(connected > 0, round(hung_up / connected, 4), NULL) AS hangup_rate,
       if(attempts > 0, round(declined / attempts, 4), NULL) AS decline_rate,
       if(connected > 0, round(refused / connected, 4), NULL) AS refusal_rate,
       if(attempts > 0, round(connected / attempts, 4), NULL) AS contact_rate"""
SUM_COUNTS: Final = ("sum(c_attempts) AS attempts, sum(c_connected) AS connected, sum(c_hung_up) AS hung_up, "
                     "sum(c_declined) AS declined, sum(c_refused) AS refused")
COUNT_COLUMNS: Final = ("attempts", "connected", "hung_up", "declined", "refused")
CELL_KEY: Final = "window_size_s, dimension, value, window_start"


def latest(columns: Sequence[str], version: str, prefix: str) -> str:
    """argMax of each column by `version`, aliased `<prefix><column>` (never the column's own
    name: an alias shadowing a column used inside an aggregate breaks old servers)."""
    return ",\n           ".join(f"argMax({c}, {version}) AS {prefix}{c}" for c in columns)


def current_cells(db: str, where: str, columns: Sequence[str] = COUNT_COLUMNS) -> str:
    """One row per window cell of hangup_rates: its key columns and the highest version of
    each of `columns` as c_<column>. Exact before merges without FINAL (argMax over the
    version, grouped by the key). `where` may only test key columns (window_size_s,
    dimension, value, window_start), so every version of a cell passes or none does; a
    window_start range prunes the day partitions."""
    return f"""(
    SELECT {CELL_KEY},
           {latest(columns, "version", "c_")}
    FROM {db}.hangup_rates
    WHERE {where}
    GROUP BY {CELL_KEY}
)"""


# A flag's current state is its furthest status (raised < escalated < resolved); the
# emission time breaks ties between redeliveries of one transition. One number, because
# old servers take no tuple as argMax's second argument.
FLAG_VERSION: Final = "toUInt64(toInt8(status)) * 10000000000000 + emitted_at_ms"
FLAG_COLUMNS: Final = ("borrower_id", "loan_id", "rule_id", "status", "severity", "explanation", "evidence",
                       "evidence_count", "last_event_at")
# The evidence as arrays (migration 0008), element i = the i-th call of the evidence.
EVIDENCE_ARRAYS: Final = ("evidence_occurred_at", "evidence_outcome", "evidence_hangup_stage", "evidence_agent_id",
                          "evidence_script_version")
ALERT_COLUMNS: Final = ("status", "dimension", "value", "window_start", "window_end", "window_size_s", "connected",
                        "hung_up",
                        "hangup_rate", "wilson_low", "baseline_rate", "explanation", "emitted_at")


def current_flags(db: str, where: str = "1=1", columns: Sequence[str] = FLAG_COLUMNS) -> str:
    """One row per flag, its current state as f_<column>. `where` filters the transitions
    first: a lower bound on last_event_at keeps every later transition (a flag's times only
    grow), so a flag resolved in range is still seen as resolved. `columns`: those a query
    reads (each costs an argMax over every transition)."""
    return f"""(
    SELECT flag_id,
           {latest(columns, FLAG_VERSION, "f_")}
    FROM {db}.borrower_flags
    WHERE {where}
    GROUP BY flag_id
)"""


def current_alerts(db: str, columns: Sequence[str] = ALERT_COLUMNS) -> str:
    """One row per alert, its latest record (firing, then resolved) as a_<column>."""
    return f"""(
    SELECT alert_id,
           {latest(columns, "version", "a_")}
    FROM {db}.hangup_alerts
    GROUP BY alert_id
)"""


def dead_letters(db: str) -> str:
    """One row per source position (exact however many times a dead letter was delivered)."""
    cols = ["error_kind", "error_field", "error", "received_at", "worker", "source_timestamp_ms"]
    return f"""(
    SELECT source_topic, source_partition, source_offset,
           {latest(cols, "ingested_at", "d_")}
    FROM {db}.dead_letters
    GROUP BY source_topic, source_partition, source_offset
)"""
