"""Batch oracle for the borrower flags: the rules of docs/contract.md walked from scratch.

Deliberately simple, quadratic and independent of streams.core.flags (it only reads the rule
parameters from the RuleSet): dedupe by event_id (first occurrence wins), group by borrower,
sort by (event time, event_id), then walk each rule over the whole history. The v2 facts and
next_action of each transition are recomputed from its evidence events (local hours with zoneinfo).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.streams.core.rules_config import ComplianceFrequencyRule, QuietHoursRule, RepeatedRefusalRule, RuleSet


@dataclasses.dataclass(frozen=True)
class OracleFlag:
    borrower_id: str
    rule_id: str
    flag_id: str
    status: str
    severity: str
    evidence_ids: tuple[str, ...]
    facts: dict[str, Any] = dataclasses.field(default_factory=dict, compare=True)
    next_action: dict[str, Any] = dataclasses.field(default_factory=dict, compare=True)


def _fid(rule_id: str, borrower_id: str, anchor: str) -> str:
    return hashlib.sha1(f"{rule_id}|{borrower_id}|{anchor}".encode()).hexdigest()


def _key(e: CallOutcome) -> tuple[int, str]:
    return e.occurred_at_ms, e.event_id


def oracle_flag_records(events: Iterable[CallOutcome], rules: RuleSet) -> list[OracleFlag]:
    first: dict[str, CallOutcome] = {}
    for e in events:
        first.setdefault(e.event_id, e)
    by_borrower: dict[str, list[CallOutcome]] = defaultdict(list)
    for e in first.values():
        by_borrower[e.borrower_id].append(e)
    out: list[OracleFlag] = []
    for borrower, evs in sorted(by_borrower.items()):
        evs.sort(key=_key)
        for rule in rules.rules:
            if not rule.enabled:
                continue
            if isinstance(rule, RepeatedRefusalRule):
                out += _repeated_refusal(borrower, evs, rule, ZoneInfo(rules.timezone))
            elif isinstance(rule, ComplianceFrequencyRule):
                out += _frequency(borrower, evs, rule, ZoneInfo(rules.timezone))
            elif isinstance(rule, QuietHoursRule):
                out += _quiet(borrower, evs, rule, ZoneInfo(rules.timezone))
    return out


def oracle_flags(events: Iterable[CallOutcome], rules: RuleSet) -> list[tuple[str, str]]:
    """Sorted (flag_id, status) of every transition the batch walk produces."""
    return sorted((f.flag_id, f.status) for f in oracle_flag_records(events, rules))


def _repeated_refusal(borrower: str, evs: list[CallOutcome], rule: RepeatedRefusalRule,
                      tz: ZoneInfo) -> list[OracleFlag]:
    out = []
    status = None
    reset: CallOutcome | None = None
    anchor = ""

    def flag(st: str, evidence: list[CallOutcome]) -> OracleFlag:
        if st == "resolved":
            threshold = None
        else:
            threshold = {"metric": "negative_outcomes", "count": len(evidence), "op": ">=",
                         "limit": rule.raise_at if st == "raised" else rule.escalate_at, "window_ms": rule.window_ms}
        facts = _facts(evidence, tz, threshold)
        return OracleFlag(borrower, rule.id, _fid(rule.id, borrower, anchor), st, rule.severity[st],
                          tuple(e.event_id for e in evidence), facts, _refusal_action(st, facts, rule))

    for e in evs:
        if e.outcome in rule.resolve_outcomes:
            if status is not None:
                out.append(flag("resolved", [e]))
                status, reset, anchor = None, e, e.event_id
        elif e.outcome in rule.negative_outcomes:
            window = [n for n in evs
                      if n.outcome in rule.negative_outcomes and _key(n) <= _key(e)
                      and n.occurred_at_ms > e.occurred_at_ms - rule.window_ms
                      and (reset is None or _key(n) > _key(reset))]
            if status is None and len(window) >= rule.raise_at:
                status = "raised"
                out.append(flag("raised", window))
            if status == "raised" and len(window) >= rule.escalate_at:
                status = "escalated"
                out.append(flag("escalated", window))
    return out


def _local(e: CallOutcome, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(e.occurred_at_ms / 1000, tz)


def _frequency(borrower: str, evs: list[CallOutcome], rule: ComplianceFrequencyRule, tz: ZoneInfo) -> list[OracleFlag]:
    per_day: dict[str, list[CallOutcome]] = defaultdict(list)
    for e in evs:
        if e.outcome in rule.unanswered_outcomes:
            per_day[_local(e, tz).date().isoformat()].append(e)
    out = []
    for day, day_evs in sorted(per_day.items()):
        if len(day_evs) > rule.max_per_day:
            evidence = day_evs[: rule.max_per_day + 1]
            facts = _facts(evidence, tz, {"metric": "unanswered_attempts", "count": len(evidence), "op": ">",
                                          "limit": rule.max_per_day, "window_ms": 86_400_000})
            action = {"code": "pause_until_next_day", "params": {"attempts": len(evidence),
                                                                 "limit": rule.max_per_day}, "also": []}
            out.append(OracleFlag(borrower, rule.id, _fid(rule.id, borrower, day), "raised", rule.severity["raised"],
                                  tuple(e.event_id for e in evidence), facts, action))
    return out


def _quiet(borrower: str, evs: list[CallOutcome], rule: QuietHoursRule, tz: ZoneInfo) -> list[OracleFlag]:
    first_quiet: dict[str, CallOutcome] = {}
    for e in evs:
        t = _local(e, tz)
        ms = ((t.hour * 60 + t.minute) * 60 + t.second) * 1000 + t.microsecond // 1000
        if rule.start_ms > rule.end_ms:
            quiet = ms >= rule.start_ms or ms < rule.end_ms
        else:
            quiet = rule.start_ms <= ms < rule.end_ms
        if quiet:
            first_quiet.setdefault(t.date().isoformat(), e)
    threshold = {"metric": "quiet_hours_calls", "count": 1, "op": ">=", "limit": 1, "window_ms": 86_400_000}
    return [OracleFlag(borrower, rule.id, _fid(rule.id, borrower, day), "raised", rule.severity["raised"],
                       (e.event_id,), _facts([e], tz, threshold),
                       {"code": "reschedule_outside_quiet_hours", "params": {"calls": 1}, "also": []})
            for day, e in sorted(first_quiet.items())]


# --- v2 facts and next action, recomputed from the events (docs/contract.md, "Next action") ---

def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).isoformat(timespec="seconds").removesuffix("+00:00") + \
        f".{ms % 1000:03d}Z"


def _bad_hour(e: CallOutcome, tz: ZoneInfo) -> bool:
    h = _local(e, tz).hour
    return h < 9 or h in (12, 13) or h >= 20


def _facts(evidence: list[CallOutcome], tz: ZoneInfo, threshold: dict[str, Any] | None) -> dict[str, Any]:
    outcomes = {o: sum(e.outcome == o for e in evidence) for o in dict.fromkeys(e.outcome for e in evidence)}
    channels = {c: sum(e.channel == c for e in evidence) for c in dict.fromkeys(e.channel for e in evidence)}
    pre = sum(e.pre_notified for e in evidence)
    return {
        "calls": len(evidence),
        "outcome_counts": outcomes,
        "hangup_stages": list(dict.fromkeys(e.hangup_stage for e in evidence if e.hangup_stage)),
        "channel_counts": channels,
        "first_call_at": _iso(evidence[0].occurred_at_ms),
        "last_call_at": _iso(evidence[-1].occurred_at_ms),
        "pre_notified": pre > 0,
        "pre_notified_calls": pre,
        "bad_hour_calls": sum(_bad_hour(e, tz) for e in evidence),
        "threshold": threshold,
    }


def _refusal_action(status: str, facts: dict[str, Any], rule: RepeatedRefusalRule) -> dict[str, Any]:
    if status == "resolved":
        return {"code": "none", "params": {}, "also": []}
    n = facts["calls"]
    robot = facts["channel_counts"].get("robot", 0)
    candidates = [
        ("escalate_branch_visit", n >= rule.escalate_at, {"refusals": n, "limit": rule.escalate_at}),
        ("switch_to_human", robot > n / 2, {"robot_calls": robot, "calls": n}),
        ("pre_notify_sms", not facts["pre_notified"], {"calls": n}),
        ("call_in_best_slot", facts["bad_hour_calls"] > n / 2, {"bad_hour_calls": facts["bad_hour_calls"], "calls": n}),
    ]
    applies = [(code, params) for code, ok, params in candidates if ok]
    if not applies:
        return {"code": "manual_review", "params": {"calls": n}, "also": []}
    return {"code": applies[0][0], "params": applies[0][1], "also": [code for code, _ in applies[1:]]}
