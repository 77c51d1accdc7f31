"""Batch oracle for the borrower flags: the rules of docs/contract.md walked from scratch.

Deliberately simple, quadratic and independent of streams.core.flags (it only reads the rule
parameters from the RuleSet): dedupe by event_id (first occurrence wins), group by borrower,
sort by (event time, event_id), then walk each rule over the whole history.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
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
                out += _repeated_refusal(borrower, evs, rule)
            elif isinstance(rule, ComplianceFrequencyRule):
                out += _frequency(borrower, evs, rule, ZoneInfo(rules.timezone))
            elif isinstance(rule, QuietHoursRule):
                out += _quiet(borrower, evs, rule, ZoneInfo(rules.timezone))
    return out


def oracle_flags(events: Iterable[CallOutcome], rules: RuleSet) -> list[tuple[str, str]]:
    """Sorted (flag_id, status) of every transition the batch walk produces."""
    return sorted((f.flag_id, f.status) for f in oracle_flag_records(events, rules))


def _repeated_refusal(borrower: str, evs: list[CallOutcome], rule: RepeatedRefusalRule) -> list[OracleFlag]:
    out = []
    status = None
    reset: CallOutcome | None = None
    anchor = ""

    def flag(st: str, evidence: list[CallOutcome]) -> OracleFlag:
        return OracleFlag(borrower, rule.id, _fid(rule.id, borrower, anchor), st, rule.severity[st],
                          tuple(e.event_id for e in evidence))

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
    return [OracleFlag(borrower, rule.id, _fid(rule.id, borrower, day), "raised", rule.severity["raised"],
                       tuple(e.event_id for e in day_evs[: rule.max_per_day + 1]))
            for day, day_evs in sorted(per_day.items()) if len(day_evs) > rule.max_per_day]


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
    return [OracleFlag(borrower, rule.id, _fid(rule.id, borrower, day), "raised", rule.severity["raised"],
                       (e.event_id,)) for day, e in sorted(first_quiet.items())]
