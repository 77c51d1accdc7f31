"""Flag and alert explanations in a chosen language, rendered from the facts the tables hold
(rule, status, counts, the evidence arrays of borrower_flags, the numbers of hangup_alerts),
never parsed from the stored English sentence, which stays the fallback (rows without evidence
arrays, stored before migration 0008; rules this module does not know)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from hangwatch.i18n.glossary import GlossaryError, Words
from hangwatch.streams.core.rules_config import (
    DAY_MS,
    ComplianceFrequencyRule,
    QuietHoursRule,
    RepeatedRefusalRule,
    RuleSet,
)


def local(t: Any, tz: tzinfo) -> str:
    """`2026-12-03 15:30` in zone tz (what every surface shows; the zone is named once per page)."""
    return t.astimezone(tz).strftime("%Y-%m-%d %H:%M") if isinstance(t, datetime) else "-"


def phrase(w: Words, outcome: str, stage: str | None) -> str:
    """`hung up at income check` / `收入核实阶段挂断`; the outcome alone without a stage."""
    if not stage:
        return w.name("outcome", outcome)
    return w.text("explain.outcome_at_stage", outcome=w.name("outcome", outcome), stage=w.name("stage", stage))


def summary(w: Words, outcomes: Sequence[str], stages: Sequence[str]) -> str:
    """Each (outcome, stage) with its count, commonest first, ties in order of first sight."""
    counts: dict[str, int] = {}
    for o, s in zip(outcomes, stages, strict=False):
        p = phrase(w, o, s)
        counts[p] = counts.get(p, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return w.join([w.text("explain.times", phrase=p, n=n) for p, n in ranked])


def evidence_lines(w: Words, row: Mapping[str, Any], tz: tzinfo) -> str:
    """One line per call of a flag's evidence: local time, outcome at stage, channel, agent, [script]."""
    times = list(row.get("ev_occurred_at") or [])
    if not times:
        return str(row.get("evidence") or "")  # stored before the evidence arrays (migration 0008)
    lines = []
    for i, t in enumerate(times):
        def at(name: str, i: int = i) -> str:
            values = list(row.get(f"ev_{name}") or [])
            return str(values[i]) if i < len(values) and values[i] else ""

        parts = [local(t, tz), phrase(w, at("outcome"), at("hangup_stage")), w.name("channel", at("channel"))
                 if at("channel") else "", at("agent_id"), f"[{at('script_version')}]" if at("script_version") else ""]
        lines.append(" ".join(p for p in parts if p))
    return "\n".join(lines)


def _rule(rules: RuleSet | None, rule_id: str) -> Any:
    return next((r for r in rules.rules if r.id == rule_id), None) if rules else None


def flag_explanation(w: Words, row: Mapping[str, Any], rules: RuleSet | None, tz: tzinfo) -> str:
    """A flag's explanation from its facts: rule_id, status, last_event_at, explanation and the
    evidence arrays ev_occurred_at, ev_outcome, ev_hangup_stage, ev_channel."""
    outcomes = list(row.get("ev_outcome") or [])
    stages = list(row.get("ev_hangup_stage") or [])
    rule = _rule(rules, str(row.get("rule_id")))
    fallback = str(row.get("explanation") or "")
    if not outcomes or rule is None:
        return fallback
    last = local(row.get("last_event_at"), tz)
    if isinstance(rule, RepeatedRefusalRule):
        if row.get("status") == "resolved":
            return w.text("explain.repeated_refusal.resolved", last=last, outcome=w.name("outcome", outcomes[-1]))
        return w.text("explain.repeated_refusal", n=len(outcomes), days=f"{rule.window_ms / DAY_MS:g}",
                      summary=summary(w, outcomes, stages), last=last)
    if isinstance(rule, ComplianceFrequencyRule):
        t = row.get("last_event_at")
        day = t.astimezone(tz).date().isoformat() if isinstance(t, datetime) else "-"
        return w.text("explain.compliance_frequency", n=len(outcomes), day=day, limit=rule.max_per_day,
                      summary=summary(w, outcomes, stages))
    if isinstance(rule, QuietHoursRule):
        channels = list(row.get("ev_channel") or [])
        return w.text("explain.compliance_quiet_hours", channel=w.name("channel", channels[0] if channels else ""),
                      last=last, hours=rule.label, phrase=phrase(w, outcomes[0], stages[0] if stages else None))
    return fallback


def next_action_text(w: Words, row: Mapping[str, Any]) -> str:
    """A flag's suggested next action (BorrowerFlag v2) in w's language, from its code and integer
    parameters: a record's `next_action` object, or the borrower_flags columns next_action,
    next_action_param_names and next_action_param_values (migration 0011). '' when there is none
    (v1 rows); the code's display name when its sentence lacks a parameter."""
    action = row.get("next_action")
    if isinstance(action, Mapping):
        code, params = action.get("code"), dict(action.get("params") or {})
    else:
        code = action
        params = dict(zip(row.get("next_action_param_names") or [], row.get("next_action_param_values") or [],
                          strict=False))
    if not code:
        return ""
    try:
        return w.text(f"next_action.{code}").format(**params)  # .format also when params is empty
    except (GlossaryError, KeyError, IndexError):
        return w.name("next_action", code)


def alert_explanation(w: Words, row: Mapping[str, Any], window_s: int, tz: tzinfo) -> str:
    """A firing spike alert from its numbers (dimension, value, window_start, window_size_s,
    connected, hangup_rate, baseline_rate, wilson_low). The window is the record's own (the span
    of minutes that fired); `window_s` stands in for rows without it."""
    try:
        window_s = int(row.get("window_size_s") or window_s)
        connected = int(row["connected"])
        rate = float(row["hangup_rate"])
        return w.text("explain.alert.firing", dimension=w.name("dimension", row["dimension"]),
                      value=w.name(str(row["dimension"]), row["value"]), start=local(row["window_start"], tz),
                      minutes=window_s // 60, rate=f"{rate:.0%}", connected=connected,
                      hung_up=round(rate * connected), baseline=f"{float(row['baseline_rate']):.0%}",
                      low=f"{float(row['wilson_low']):.0%}")
    except (KeyError, TypeError, ValueError):
        return str(row.get("explanation") or "")
