"""Drill-down into one borrower: their calls from borrower_calls (migrations 0013, 0018), which
holds the same events as call_events ordered by the borrower's hash and id, so a year of one
borrower's calls reads a few granules per month partition (the hash condition is what the
primary key prunes on). One row per event_id (copies of a redelivered event
collapse on merge; LIMIT 1 BY before that)."""

from __future__ import annotations

from hangwatch.sinks.catalogue import params
from hangwatch.sinks.catalogue.registry import Context, Param, query
from hangwatch.sinks.sql import literal

BORROWER = Param("borrower", "", "the borrower_id (pseudonymous, as in the flags)", str)


@query("borrower_calls", "One borrower's calls in the range, newest first (drill-down from a flag).", BORROWER,
       params.limit(500), time="range", since="365d")
def borrower_calls(ctx: Context, borrower: str, limit: int) -> str:
    return f"""SELECT occurred_at, outcome, hangup_stage, channel, agent_id, branch, campaign, script_version,
       duration_s, attempt_no, pre_notified, credit_grade, call_id, event_id
FROM {ctx.db}.borrower_calls
WHERE cityHash64(borrower_id) = cityHash64({literal(borrower)}) AND borrower_id = {literal(borrower)}
  AND {ctx.frame.time_filter("occurred_at")}
ORDER BY occurred_at DESC, event_id
LIMIT 1 BY event_id
LIMIT {int(limit)}"""
