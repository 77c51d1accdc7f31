"""The one grammar for times and durations that people type (CLI options, settings, the
simulator). Everything else in the project works on aware datetimes or epoch milliseconds.

Durations: `90s`, `15m`, `2h`, `1h30m`, `7d`, `2w`, or plain seconds (`900`).

Times:
- a duration alone: that long before the base (`24h` = 24 hours before now, or before the
  other end of a range);
- an anchor with an optional offset: `now`, `now-2h`, `now+10m`, `today`, `yesterday`,
  `yesterday+8h` (today and yesterday are midnight of the local calendar day), plus anchors the
  caller names (the simulator's `start+1h`);
- an ISO 8601 date or time, with `T` or a space: `2026-12-03`, `2026-12-03 15:30`,
  `2026-12-03T15:30:00+08:00`, `...Z`. Without an offset it is read in the configured zone.

Results are aware datetimes in UTC (storage and topics are UTC; people see their own zone).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from hangwatch.platform.settings import Settings

_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_PART: Final = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_DURATION: Final = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_ANCHORED: Final = re.compile(r"([a-z_]+)\s*(?:([+-])\s*(\S+))?")

DURATION_FORMS: Final = "90s, 15m, 2h, 1h30m, 7d, 2w or plain seconds"
TIME_FORMS: Final = ("a duration before now (24h, 1h30m), now-2h, today, yesterday, "
                     "2026-12-03, 2026-12-03 15:30 (local time) or 2026-12-03T15:30+08:00")


class TimeParseError(ValueError):
    """A time or duration that does not follow the grammar; the message names the forms."""

    def __init__(self, message: str, text: str = "") -> None:
        super().__init__(message)
        self.text = text  # what was typed


class ReversedRange(TimeParseError):
    """A range whose start is not before its end."""

    def __init__(self, start: datetime, end: datetime, tz: tzinfo) -> None:
        super().__init__(f"--since ({format_local(start, tz)}) must be before --until ({format_local(end, tz)})")
        self.start, self.end = start, end


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (Asia/Shanghai), or TimeParseError saying what a zone looks like."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeParseError(f"unknown time zone {name!r}; use an IANA name such as Asia/Shanghai or UTC") from None


def local_zone_name(settings: Settings) -> str:
    """The zone in which times without an offset are read, local times are shown and calendar
    days are counted. The one place that knows which setting holds it: `timezone`
    (HANGWATCH_TIMEZONE; the deprecated worker.timezone is folded into it by the settings)."""
    return settings.timezone


def local_zone(settings: Settings) -> ZoneInfo:
    return zone(local_zone_name(settings))


def parse_duration(text: str) -> timedelta:
    """`90s`, `1h30m`, `7d`, `2w`, or plain seconds."""
    s = text.strip().lower()
    try:
        seconds = float(s)
    except ValueError:
        if not _DURATION.fullmatch(s):
            raise TimeParseError(f"not a duration: {text!r} (use {DURATION_FORMS})") from None
        seconds = sum(float(n) * _UNIT_S[u] for n, u in _PART.findall(s))
    if seconds < 0:
        raise TimeParseError(f"not a duration: {text!r} (durations are positive; use {DURATION_FORMS})")
    return timedelta(seconds=seconds)


def local_midnight(t: datetime, tz: tzinfo) -> datetime:
    """Midnight of t's calendar day in zone tz, as an aware UTC datetime."""
    day = t.astimezone(tz).date()
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def parse_time(text: str, *, now: datetime, tz: tzinfo, base: datetime | None = None,
               anchors: Mapping[str, datetime] | None = None) -> datetime:
    """Parse `text` (see the module docstring) into an aware UTC datetime.

    now: the current time; tz: the zone of local times and calendar days; base: what a bare
    duration counts back from (default now); anchors: extra names such as {"start": t}."""
    s = text.strip()
    if not s:
        raise TimeParseError(f"empty time; use {TIME_FORMS}", text)
    lower = s.lower()
    if _DURATION.fullmatch(lower):
        return (base or now).astimezone(UTC) - parse_duration(lower)
    m = _ANCHORED.fullmatch(lower)
    if m:
        name, sign, amount = m.groups()
        known = _anchors(now, tz, anchors)
        if name not in known:
            raise TimeParseError(f"not a time: {text!r} (use {TIME_FORMS})", text)
        at = known[name]
        if sign is None:
            return at
        try:
            delta = parse_duration(amount)
        except TimeParseError as e:  # the duration's message, with the whole time typed
            raise TimeParseError(str(e), text) from None
        return at - delta if sign == "-" else at + delta
    return _parse_iso(s, tz)


def _anchors(now: datetime, tz: tzinfo, extra: Mapping[str, datetime] | None) -> dict[str, datetime]:
    today = local_midnight(now, tz)
    known = {"now": now.astimezone(UTC), "today": today, "yesterday": local_midnight(today - timedelta(hours=12), tz)}
    for name, at in (extra or {}).items():
        known[name.lower()] = at.astimezone(UTC)
    return known


def _parse_iso(text: str, tz: tzinfo) -> datetime:
    s = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        raise TimeParseError(f"not a time: {text!r} (use {TIME_FORMS})", text) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz)
    return t.astimezone(UTC)


def parse_range(since: str, until: str | None, *, now: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    """A [start, end) range: `until` defaults to now, a bare duration in `since` counts back
    from the end. TimeParseError when the range is empty or reversed."""
    end = parse_time(until, now=now, tz=tz) if until else now.astimezone(UTC)
    start = parse_time(since, now=now, tz=tz, base=end)
    if start >= end:
        raise ReversedRange(start, end, tz)
    return start, end


def to_ms(t: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return round(t.timestamp() * 1000)


def format_local(t: datetime, tz: tzinfo, seconds: bool = False) -> str:
    """`2026-12-03 15:30` (or with seconds) in zone tz, with the zone's abbreviation or offset."""
    local = t.astimezone(tz)
    return local.strftime("%Y-%m-%d %H:%M:%S %z" if seconds else "%Y-%m-%d %H:%M %z")
