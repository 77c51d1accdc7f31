"""The review / re-dial list: one row per flag, with the borrower's full pseudonymous id (a
re-dial list needs it), rule, status, number of calls, first and last call in local time, the
explanation and the suggested next action in the chosen language and the evidence as columns."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from hangwatch.i18n import Words
from hangwatch.i18n.explain import evidence_lines, flag_explanation, next_action_text
from hangwatch.streams.core.rules_config import RuleSet

# (column key, glossary term, kind): kind "id" = text that must stay text, "time" = a local
# date-time, "int", or "" (text).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("borrower_id", "borrower", "id"), ("loan_id", "loan", "id"), ("rule", "rule", ""),
    ("rule_version", "rule_version", "int"), ("severity", "severity", ""), ("status", "status", ""),
    ("calls", "calls", "int"), ("first_call", "first_call", "time"), ("last_call", "last_call", "time"),
    ("explanation", "explanation", ""), ("next_action", "next_action", ""), ("best_slot", "best_slot", ""),
    ("outcomes", "outcomes", ""),
    ("stages", "stages", ""),
    ("channels", "channels", ""), ("agents", "agents", ""), ("script_versions", "script_version", ""),
    ("evidence", "evidence", ""), ("flag_id", "flag_id", "id"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class ReviewList:
    headers: list[str]
    kinds: list[str]
    rows: list[list[Any]]  # times as naive local datetimes (what a spreadsheet shows)
    title: str  # one line: what, period, zone, rules version
    sheet: str = "flags"  # the XLSX sheet's name


def _counted(w: Words, kind: str, values: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for v in values:
        if v:
            counts[v] = counts.get(v, 0) + 1
    return w.join([w.text("explain.times", phrase=w.name(kind, v), n=n) for v, n in counts.items()])


def _naive_local(t: Any, tz: tzinfo) -> datetime | None:
    return t.astimezone(tz).replace(tzinfo=None) if isinstance(t, datetime) else None


def review_list(w: Words, rows: Sequence[Mapping[str, Any]], rules: RuleSet | None, tz: tzinfo,
                title: str, best_slots: Mapping[str, str] | None = None) -> ReviewList:
    """The list in w's language; `title`: the line that says what it holds (export.info);
    `best_slots`: borrower -> the best slots of their segment, beside the suggested action
    (hangwatch.report.remedies.best_slot_by_borrower; docs/analytics.md, "Next action on a flag")."""
    out = []
    for r in rows:
        values = {
            "borrower_id": str(r["borrower_id"]), "loan_id": str(r.get("loan_id") or ""),
            "rule": w.name("rule", r["rule_id"]), "rule_version": int(r.get("rule_version") or 0),
            "severity": w.name("severity", r["severity"]), "status": w.name("status", r["status"]),
            "calls": int(r.get("calls") or 0), "first_call": _naive_local(r.get("first_event_at"), tz),
            "last_call": _naive_local(r.get("last_event_at"), tz),
            "explanation": flag_explanation(w, r, rules, tz), "next_action": next_action_text(w, r),
            "best_slot": (best_slots or {}).get(str(r["borrower_id"]), ""),
            "outcomes": _counted(w, "outcome", list(r.get("ev_outcome") or [])),
            "stages": _counted(w, "stage", list(r.get("ev_hangup_stage") or [])),
            "channels": _counted(w, "channel", list(r.get("ev_channel") or [])),
            "agents": w.join(sorted({a for a in r.get("ev_agent_id") or [] if a})),
            "script_versions": w.join(sorted({v for v in r.get("ev_script_version") or [] if v})),
            "evidence": evidence_lines(w, r, tz), "flag_id": str(r["flag_id"]),
        }
        out.append([values[key] for key, _, _ in COLUMNS])
    return ReviewList([w.term(term) for _, term, _ in COLUMNS], [kind for _, _, kind in COLUMNS], out, title,
                      w.text("export.sheet"))
