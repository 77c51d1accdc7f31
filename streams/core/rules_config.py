"""Borrower rules as data: parse and validate streams/rules.yaml into a `RuleSet`.

The rules are configuration, not code, so that a risk team can tune thresholds (and bump the
rule version that every flag carries) without a release. A bad file must never start a worker
that silently flags nothing, so every problem is reported precisely: which file, which rule,
which key, what was expected. Unknown keys are errors too (a typo such as `rasie_at` would
otherwise fall back to a default unnoticed).

The `RuleSet` also owns the local-time arithmetic (calendar days and quiet hours live in the rule
time zone, default Asia/Shanghai): zoneinfo lookups are slow, so UTC offsets are cached per
15-minute bucket, which keeps the flag evaluator fast without assuming a fixed offset.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
import warnings
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from hangwatch.schemas.call_outcome import NEGATIVE_OUTCOMES, OUTCOMES, UNANSWERED_OUTCOMES

Severity = Literal["low", "medium", "high"]
Status = Literal["raised", "escalated", "resolved"]

DEFAULT_TIMEZONE: Final = "Asia/Shanghai"
# Located through the package, not __file__: a mypyc-compiled module has no trustworthy __file__.
DEFAULT_RULES_PATH: Final = Path(str(importlib.resources.files("hangwatch.streams"))) / "rules.yaml"
DAY_MS: Final = 86_400_000
# The longest local calendar day (a DST change adds an hour): a compliance rule looks this far back.
_LONGEST_DAY_MS: Final = DAY_MS + 3_600_000
_SEVERITIES: Final = ("low", "medium", "high")
_ID_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TIME_RE: Final = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")
_OFFSET_BUCKET_MS: Final = 900_000  # every UTC-offset change since 1970 falls on a quarter hour


class RulesConfigError(ValueError):
    """The rules file is unusable; the message names the file, the rule and the key at fault."""


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    id: str
    kind: str
    version: int
    enabled: bool
    severity: Mapping[str, Severity]  # status -> severity

    def severity_for(self, status: Status) -> Severity:
        return self.severity[status]


@dataclasses.dataclass(frozen=True, slots=True)
class RepeatedRefusalRule(Rule):
    """>= raise_at negative outcomes with a span below window_ms raise; >= escalate_at escalate;
    a resolve outcome closes the episode and restarts the count after it."""

    window_ms: int
    raise_at: int
    escalate_at: int
    negative_outcomes: frozenset[str]
    resolve_outcomes: frozenset[str]


@dataclasses.dataclass(frozen=True, slots=True)
class ComplianceFrequencyRule(Rule):
    """More than max_per_day unanswered attempts in one local calendar day."""

    max_per_day: int
    unanswered_outcomes: frozenset[str]


@dataclasses.dataclass(frozen=True, slots=True)
class QuietHoursRule(Rule):
    """A call whose local time of day is in [start_ms, end_ms) (wrapping midnight if start > end)."""

    start_ms: int  # milliseconds after local midnight
    end_ms: int

    def is_quiet(self, tod_ms: int) -> bool:
        if self.start_ms > self.end_ms:
            return tod_ms >= self.start_ms or tod_ms < self.end_ms
        return self.start_ms <= tod_ms < self.end_ms

    @property
    def label(self) -> str:
        return f"{_hhmm(self.start_ms)}-{_hhmm(self.end_ms)}"


KINDS: Final = ("repeated_refusal", "compliance_frequency", "compliance_quiet_hours")
_STATUSES: Final[dict[str, tuple[Status, ...]]] = {
    "repeated_refusal": ("raised", "escalated", "resolved"),
    "compliance_frequency": ("raised",),
    "compliance_quiet_hours": ("raised",),
}
_DEFAULT_SEVERITY: Final[dict[str, dict[str, Severity]]] = {
    "repeated_refusal": {"raised": "medium", "escalated": "high", "resolved": "low"},
    "compliance_frequency": {"raised": "high"},
    "compliance_quiet_hours": {"raised": "high"},
}
_DEFAULT_PARAMS: Final[dict[str, dict[str, Any]]] = {
    "repeated_refusal": {
        "window_days": 7,
        "raise_at": 3,
        "escalate_at": 5,
        "negative_outcomes": sorted(NEGATIVE_OUTCOMES),
        "resolve_outcomes": ["completed"],
    },
    "compliance_frequency": {"max_unanswered_per_day": 6, "unanswered_outcomes": sorted(UNANSWERED_OUTCOMES)},
    "compliance_quiet_hours": {"start": "22:00", "end": "08:00"},
}


class RuleSet:
    """The loaded rules plus the time zone and per-borrower retention they are evaluated with."""

    __slots__ = (
        "_day_iso",
        "_offsets",
        "compliance_frequency",
        "fingerprint",
        "max_lateness_ms",
        "quiet_hours",
        "repeated_refusal",
        "retention_ms",
        "rules",
        "timezone",
        "tz",
    )

    def __init__(self, rules: tuple[Rule, ...], timezone: str = DEFAULT_TIMEZONE,
                 retention_ms: int = 8 * DAY_MS) -> None:
        self.rules = rules
        self.timezone = timezone
        self.tz = _zone(timezone, "timezone")
        self.retention_ms = retention_ms
        enabled = [r for r in rules if r.enabled]
        self.repeated_refusal = tuple(r for r in enabled if isinstance(r, RepeatedRefusalRule))
        self.compliance_frequency = tuple(r for r in enabled if isinstance(r, ComplianceFrequencyRule))
        self.quiet_hours = tuple(r for r in enabled if isinstance(r, QuietHoursRule))
        longest = max([_LONGEST_DAY_MS, *(r.window_ms for r in self.repeated_refusal)])
        if retention_ms <= longest:
            raise RulesConfigError(
                f"retention_days: {retention_ms / DAY_MS:g} days must exceed the longest rule window "
                f"({longest / DAY_MS:g} days)")
        # How far behind a borrower's newest event an event may arrive and still be evaluated
        # against complete history; older events are ignored (see streams.core.flags).
        self.max_lateness_ms = retention_ms - longest
        self._offsets: dict[int, int] = {}
        self._day_iso: dict[int, str] = {}
        # The rules' version as a flag means it: a calendar-day rule counts other days in
        # another zone, so the zone is part of it with every rule's id and version and the
        # retention. Shown with the flags (report, export); a flag's rule_version + this zone.
        parts = [f"{r.id}:v{r.version}{'' if r.enabled else ':off'}" for r in rules]
        self.fingerprint = f"{' '.join(parts)} @{timezone} retention {retention_ms // 3_600_000}h"

    def __repr__(self) -> str:
        ids = ", ".join(f"{r.id} v{r.version}{'' if r.enabled else ' (disabled)'}" for r in self.rules)
        return f"RuleSet([{ids}], timezone={self.timezone!r}, retention_days={self.retention_ms / DAY_MS:g})"

    def utc_offset_ms(self, t_ms: int) -> int:
        """UTC offset of the rule time zone at instant t_ms, cached per quarter hour."""
        bucket = t_ms // _OFFSET_BUCKET_MS
        off = self._offsets.get(bucket)
        if off is None:
            lo = self._exact_offset(bucket * _OFFSET_BUCKET_MS)
            if lo != self._exact_offset(bucket * _OFFSET_BUCKET_MS + _OFFSET_BUCKET_MS - 1):
                return self._exact_offset(t_ms)  # a change inside the bucket: never cache it
            if len(self._offsets) >= 100_000:
                self._offsets.clear()
            self._offsets[bucket] = off = lo
        return off

    def _exact_offset(self, t_ms: int) -> int:
        delta = datetime.fromtimestamp(t_ms // 1000, self.tz).utcoffset()
        return int(delta.total_seconds() * 1000) if delta is not None else 0

    def local(self, t_ms: int) -> tuple[int, int]:
        """(local day number since 1970-01-01, milliseconds after local midnight) of instant t_ms."""
        return divmod(t_ms + self.utc_offset_ms(t_ms), DAY_MS)

    def day_iso(self, day: int) -> str:
        """ISO date ("2026-11-27") of a local day number from `local`."""
        s = self._day_iso.get(day)
        if s is None:
            if len(self._day_iso) >= 100_000:
                self._day_iso.clear()
            self._day_iso[day] = s = (date(1970, 1, 1) + timedelta(days=day)).isoformat()
        return s

    def format_local(self, t_ms: int, with_date: bool = True) -> str:
        """Local wall-clock time for explanations: "2026-11-27 21:40 +08:00" (or "21:40")."""
        off = self.utc_offset_ms(t_ms)
        day, tod = divmod(t_ms + off, DAY_MS)
        hhmm = _hhmm(tod)
        if not with_date:
            return hhmm
        sign = "+" if off >= 0 else "-"
        oh, om = divmod(abs(off) // 60_000, 60)
        return f"{self.day_iso(day)} {hhmm} {sign}{oh:02d}:{om:02d}"


def _hhmm(tod_ms: int) -> str:
    minutes = tod_ms // 60_000
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _zone(name: Any, where: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise RulesConfigError(f"{where}: expected an IANA time zone name such as 'Asia/Shanghai', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RulesConfigError(f"{where}: unknown time zone {name!r}") from None


def load_rules(path: str | Path | None = None, timezone: str | None = None) -> RuleSet:
    """Load and validate a rules file (default: the packaged streams/rules.yaml).

    `timezone`: the deployment's one zone (the `timezone` setting). The file's own `timezone`
    key is deprecated: used only when no zone is given, with a warning either way."""
    p = Path(path) if path is not None else DEFAULT_RULES_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise RulesConfigError(f"{p}: cannot read rules file: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RulesConfigError(f"{p}: not valid YAML: {e}") from None
    return rules_from_dict(data, timezone=timezone, source=str(p))


def default_rules(timezone: str | None = None) -> RuleSet:
    """The packaged default rules (docs/contract.md)."""
    return load_rules(None, timezone)


def rules_from_dict(data: Any, timezone: str | None = None, source: str = "<rules>") -> RuleSet:
    """Validate an already-parsed rules document (the YAML's top-level mapping)."""
    if not isinstance(data, dict):
        raise RulesConfigError(f"{source}: expected a mapping with a 'rules' list at the top level")
    _no_unknown(data, {"timezone", "retention_days", "rules"}, f"{source}: top level")
    if "timezone" in data:
        warnings.warn(f"{source}: the rules file's timezone is deprecated and "
                      + ("ignored: the `timezone` setting decides" if timezone else "used for now: set the "
                         "`timezone` setting (HANGWATCH_TIMEZONE) and remove it from the file"),
                      FutureWarning, stacklevel=2)
    tz_name = timezone if timezone else data.get("timezone", DEFAULT_TIMEZONE)
    _zone(tz_name, f"{source}: timezone")
    retention_days = data.get("retention_days", 8)
    if isinstance(retention_days, bool) or not isinstance(retention_days, int | float) or retention_days <= 0:
        raise RulesConfigError(f"{source}: retention_days: expected a number of days > 0, got {retention_days!r}")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RulesConfigError(f"{source}: rules: expected a non-empty list of rules")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules):
        rule = _parse_rule(raw, f"{source}: rules[{i}]")
        if rule.id in seen:
            raise RulesConfigError(f"{source}: rules[{i}]: duplicate rule id {rule.id!r}")
        seen.add(rule.id)
        rules.append(rule)
    try:
        return RuleSet(tuple(rules), tz_name, round(retention_days * DAY_MS))
    except RulesConfigError as e:
        raise RulesConfigError(f"{source}: {e}") from None


def _no_unknown(d: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in d if k not in allowed)
    if unknown:
        raise RulesConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}")


def _parse_rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise RulesConfigError(f"{where}: expected a mapping with id, version, enabled, severity, params")
    rid = raw.get("id")
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise RulesConfigError(f"{where}: id: expected a lower_snake_case name, got {rid!r}")
    where = f"{where} (rule {rid!r})"
    _no_unknown(raw, {"id", "kind", "version", "enabled", "severity", "params"}, where)
    kind = raw.get("kind", rid)
    if kind not in KINDS:
        raise RulesConfigError(f"{where}: kind: unknown rule kind {kind!r}; expected one of {', '.join(KINDS)} "
                               "(kind defaults to the id)")
    version = raw.get("version")
    if type(version) is not int or version < 1:
        raise RulesConfigError(f"{where}: version: expected an integer >= 1, got {version!r}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RulesConfigError(f"{where}: enabled: expected true or false, got {enabled!r}")
    severity = _severity(raw.get("severity"), kind, f"{where}: severity")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise RulesConfigError(f"{where}: params: expected a mapping, got {params!r}")
    defaults = _DEFAULT_PARAMS[kind]
    _no_unknown(params, set(defaults), f"{where}: params")
    p = {**defaults, **params}
    base = {"id": rid, "kind": kind, "version": version, "enabled": enabled, "severity": severity}
    w = f"{where}: params"
    if kind == "repeated_refusal":
        days = p["window_days"]
        if isinstance(days, bool) or not isinstance(days, int | float) or days <= 0:
            raise RulesConfigError(f"{w}.window_days: expected a number of days > 0, got {days!r}")
        raise_at = _int(p["raise_at"], 1, f"{w}.raise_at")
        escalate_at = _int(p["escalate_at"], raise_at, f"{w}.escalate_at")
        negative = _outcomes(p["negative_outcomes"], f"{w}.negative_outcomes")
        resolve = _outcomes(p["resolve_outcomes"], f"{w}.resolve_outcomes")
        if negative & resolve:
            raise RulesConfigError(f"{w}: outcome(s) {', '.join(sorted(negative & resolve))} cannot be both "
                                   "negative and resolving")
        return RepeatedRefusalRule(**base, window_ms=round(days * DAY_MS), raise_at=raise_at,
                                   escalate_at=escalate_at, negative_outcomes=negative, resolve_outcomes=resolve)
    if kind == "compliance_frequency":
        return ComplianceFrequencyRule(**base, max_per_day=_int(p["max_unanswered_per_day"], 0,
                                                                 f"{w}.max_unanswered_per_day"),
                                       unanswered_outcomes=_outcomes(p["unanswered_outcomes"],
                                                                     f"{w}.unanswered_outcomes"))
    start, end = _tod(p["start"], f"{w}.start"), _tod(p["end"], f"{w}.end")
    if start == end:
        raise RulesConfigError(f"{w}: start and end must differ (got {p['start']!r} for both)")
    return QuietHoursRule(**base, start_ms=start, end_ms=end)


def _severity(raw: Any, kind: str, where: str) -> dict[str, Severity]:
    statuses = _STATUSES[kind]
    if raw is None:
        return dict(_DEFAULT_SEVERITY[kind])
    if isinstance(raw, str):
        if raw not in _SEVERITIES:
            raise RulesConfigError(f"{where}: expected one of {', '.join(_SEVERITIES)}, got {raw!r}")
        return {s: cast(Severity, raw) for s in statuses}
    if isinstance(raw, dict):
        _no_unknown(raw, set(statuses), where)
        out = dict(_DEFAULT_SEVERITY[kind])
        for status, level in raw.items():
            if level not in _SEVERITIES:
                raise RulesConfigError(f"{where}.{status}: expected one of {', '.join(_SEVERITIES)}, got {level!r}")
            out[status] = level
        return out
    raise RulesConfigError(f"{where}: expected a level ({', '.join(_SEVERITIES)}) or a mapping of status to level, "
                           f"got {raw!r}")


def _int(v: Any, minimum: int, where: str) -> int:
    if type(v) is not int or v < minimum:
        raise RulesConfigError(f"{where}: expected an integer >= {minimum}, got {v!r}")
    return v


def _outcomes(v: Any, where: str) -> frozenset[str]:
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise RulesConfigError(f"{where}: expected a non-empty list of outcomes, got {v!r}")
    bad = sorted(set(v) - set(OUTCOMES))
    if bad:
        raise RulesConfigError(f"{where}: unknown outcome(s) {', '.join(bad)}; expected some of {', '.join(OUTCOMES)}")
    return frozenset(v)


def _tod(v: Any, where: str) -> int:
    if not isinstance(v, str):
        # YAML 1.1 reads an unquoted 22:00 as the sexagesimal integer 1320.
        raise RulesConfigError(f"{where}: expected a quoted local time such as \"22:00\", got {v!r}")
    m = _TIME_RE.match(v)
    if not m:
        raise RulesConfigError(f"{where}: expected a local time HH:MM or HH:MM:SS, got {v!r}")
    return ((int(m.group(1)) * 60 + int(m.group(2))) * 60 + int(m.group(3) or 0)) * 1000
