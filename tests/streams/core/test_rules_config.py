"""Rules configuration: the packaged defaults match docs/contract.md; bad files say what is wrong."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hangwatch.streams.core.rules_config import (
    DAY_MS,
    ComplianceFrequencyRule,
    QuietHoursRule,
    RepeatedRefusalRule,
    RulesConfigError,
    default_rules,
    load_rules,
    rules_from_dict,
)


def test_defaults_match_the_domain() -> None:
    rules = default_rules()
    assert rules.timezone == "Asia/Shanghai" and rules.retention_ms == 8 * DAY_MS
    assert rules.max_lateness_ms == DAY_MS
    (rr,), (freq,), (quiet,) = rules.repeated_refusal, rules.compliance_frequency, rules.quiet_hours
    assert isinstance(rr, RepeatedRefusalRule)
    assert (rr.id, rr.version, rr.window_ms, rr.raise_at, rr.escalate_at) == ("repeated_refusal", 1, 7 * DAY_MS, 3, 5)
    assert rr.negative_outcomes == {"hung_up", "refused", "declined"} and rr.resolve_outcomes == {"completed"}
    assert dict(rr.severity) == {"raised": "medium", "escalated": "high", "resolved": "low"}
    assert isinstance(freq, ComplianceFrequencyRule)
    assert freq.max_per_day == 6 and freq.unanswered_outcomes == {"no_answer", "busy", "voicemail", "declined"}
    assert freq.severity_for("raised") == "high"
    assert isinstance(quiet, QuietHoursRule) and quiet.label == "22:00-08:00" and quiet.severity_for("raised") == "high"
    assert [quiet.is_quiet(h * 3_600_000) for h in (21, 22, 23, 0, 7, 8, 12)] == [False, True, True, True, True,
                                                                                   False, False]
    assert quiet.is_quiet(22 * 3_600_000 - 1) is False and quiet.is_quiet(8 * 3_600_000 - 1) is True


def test_timezone_argument_overrides_the_file(tmp_path: Path) -> None:
    assert default_rules("Europe/Berlin").timezone == "Europe/Berlin"
    p = tmp_path / "r.yaml"
    p.write_text("timezone: UTC\nrules:\n  - {id: compliance_quiet_hours, version: 3}\n")
    assert load_rules(p).timezone == "UTC"
    assert load_rules(p, "Asia/Tokyo").timezone == "Asia/Tokyo"
    assert load_rules(p).quiet_hours[0].version == 3  # params default to the domain's


def doc(**rule: Any) -> dict[str, Any]:
    return {"rules": [{"id": "repeated_refusal", "version": 1, **rule}]}


@pytest.mark.parametrize(("data", "message"), [
    (doc(params={"rasie_at": 3}), "rules[0] (rule 'repeated_refusal'): params: unknown key(s) rasie_at"),
    (doc(params={"raise_at": 0}), "params.raise_at: expected an integer >= 1, got 0"),
    (doc(params={"raise_at": 4, "escalate_at": 3}), "params.escalate_at: expected an integer >= 4, got 3"),
    (doc(params={"window_days": "7"}), "params.window_days: expected a number of days > 0"),
    (doc(params={"negative_outcomes": ["hung_up", "hangup"]}), "params.negative_outcomes: unknown outcome(s) hangup"),
    (doc(params={"resolve_outcomes": ["hung_up"]}), "hung_up cannot be both negative and resolving"),
    (doc(version=0), "version: expected an integer >= 1, got 0"),
    (doc(version="1"), "version: expected an integer >= 1"),
    (doc(enabled="yes"), "enabled: expected true or false"),
    (doc(severity="critical"), "severity: expected one of low, medium, high, got 'critical'"),
    (doc(severity={"raised": "high", "closed": "low"}), "severity: unknown key(s) closed"),
    (doc(colour="red"), "rules[0] (rule 'repeated_refusal'): unknown key(s) colour"),
    ({"rules": [{"id": "callback_storm", "version": 1}]}, "kind: unknown rule kind 'callback_storm'"),
    ({"rules": [{"id": "Bad Id", "version": 1}]}, "rules[0]: id: expected a lower_snake_case name"),
    ({"rules": [{"id": "repeated_refusal", "version": 1}, {"id": "repeated_refusal", "version": 2}]},
     "rules[1]: duplicate rule id 'repeated_refusal'"),
    ({"rules": [{"id": "compliance_quiet_hours", "version": 1, "params": {"start": 1320}}]},
     "params.start: expected a quoted local time such as \"22:00\", got 1320"),
    ({"rules": [{"id": "compliance_quiet_hours", "version": 1, "params": {"end": "24:00"}}]},
     "params.end: expected a local time HH:MM or HH:MM:SS"),
    ({"rules": [{"id": "compliance_frequency", "version": 1, "params": {"max_unanswered_per_day": -1}}]},
     "params.max_unanswered_per_day: expected an integer >= 0"),
    ({"rules": [{"id": "compliance_frequency", "version": 1, "severity": {"escalated": "high"}}]},
     "severity: unknown key(s) escalated"),
    ({"timezone": "Mars/Olympus", "rules": []}, "timezone: unknown time zone 'Mars/Olympus'"),
    ({"rules": []}, "rules: expected a non-empty list"),
    ({"rule": []}, "top level: unknown key(s) rule"),
    ([], "expected a mapping with a 'rules' list"),
    ({"retention_days": 7, **doc()}, "retention_days: 7 days must exceed the longest rule window (7 days)"),
    ({"retention_days": 0, **doc()}, "retention_days: expected a number of days > 0"),
])
def test_bad_documents_name_the_rule_and_key(data: Any, message: str) -> None:
    with pytest.raises(RulesConfigError) as e:
        rules_from_dict(data, source="x.yaml")
    assert message in str(e.value)
    assert str(e.value).startswith("x.yaml: ")


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(RulesConfigError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.yaml")
    p = tmp_path / "broken.yaml"
    p.write_text("rules: [\n")
    with pytest.raises(RulesConfigError, match="not valid YAML"):
        load_rules(p)
    p.write_text('rules:\n  - id: compliance_quiet_hours\n    version: 1\n    params: {start: 22:00}\n')
    with pytest.raises(RulesConfigError, match=r"broken.yaml: rules\[0\] \(rule 'compliance_quiet_hours'\): "
                                               r"params.start: expected a quoted local time"):
        load_rules(p)
    with pytest.raises(RulesConfigError, match="unknown time zone"):
        default_rules("Nowhere/City")


def test_variants_and_severity_forms() -> None:
    rules = rules_from_dict({"rules": [
        {"id": "repeated_refusal", "version": 1, "severity": "high"},
        {"id": "hangup_streak", "kind": "repeated_refusal", "version": 2, "enabled": False,
         "severity": {"raised": "low"}, "params": {"negative_outcomes": ["hung_up"], "window_days": 1.5}},
    ]})
    a, b = rules.rules
    assert dict(a.severity) == {"raised": "high", "escalated": "high", "resolved": "high"}
    assert isinstance(b, RepeatedRefusalRule) and b.window_ms == 36 * 3_600_000 and not b.enabled
    assert dict(b.severity) == {"raised": "low", "escalated": "high", "resolved": "low"}
    assert rules.repeated_refusal == (a,)
    assert "hangup_streak v2 (disabled)" in repr(rules)


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"])
def test_local_day_and_time_match_zoneinfo(tz: str) -> None:
    """The cached offsets agree with zoneinfo, including around DST changes (Lord Howe moves by
    30 minutes at 02:00 local, Kathmandu is +05:45)."""
    rules = default_rules(tz)
    zone = ZoneInfo(tz)
    rng = random.Random(tz)
    base = int(datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)
    instants = [base + rng.randrange(365 * DAY_MS) for _ in range(3000)]
    for y, m, d in ((2026, 3, 8), (2026, 11, 1), (2026, 4, 5), (2026, 10, 4)):  # DST changes
        mid = int(datetime(y, m, d, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)
        instants += [mid + k * 60_000 + rng.randrange(60_000) for k in range(-1500, 1500, 7)]
    for t in instants:
        dt = datetime.fromtimestamp(t / 1000, zone)
        day, tod = rules.local(t)
        assert rules.day_iso(day) == dt.date().isoformat()
        assert tod == ((dt.hour * 60 + dt.minute) * 60 + dt.second) * 1000 + dt.microsecond // 1000
    t = int(datetime(2026, 11, 27, 21, 40, tzinfo=zone).timestamp() * 1000)
    assert rules.format_local(t)[:16] == "2026-11-27 21:40"
