"""Words about the report's period: a title that fits its length, and changes from the
previous period (counts with their relative change, rates in percentage points)."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any

from hangwatch.i18n import Words

_HOUR = timedelta(hours=1)


def title(w: Words, start: datetime, end: datetime, tz: tzinfo) -> str:
    """Hourly up to an hour, daily for a local day (23-25 h: DST days), weekly for 7 days,
    monthly for 28-31 days; otherwise the generic title with the length."""
    span = end - start
    if span <= _HOUR:
        return w.text("report.title.hour")
    if timedelta(hours=23) <= span <= timedelta(hours=25):
        return w.text("report.title.day")
    if abs(span - timedelta(days=7)) <= _HOUR:
        return w.text("report.title.week")
    if timedelta(days=28) - _HOUR <= span <= timedelta(days=31) + _HOUR:
        return w.text("report.title.month")
    hours = span.total_seconds() / 3600
    if hours < 1:
        length = w.text("span.minutes", n=round(hours * 60))
    elif hours < 48:
        length = w.text("span.hours", n=f"{hours:g}" if hours == int(hours) else f"{hours:.1f}")
    else:
        length = w.text("span.days", n=f"{hours / 24:.1f}".removesuffix(".0"))
    return w.text("report.title.span", span=length)


def count_change(w: Words, now: int, before: int) -> str:
    delta = now - before
    pct = "–" if before == 0 else f"{delta / before:+.1%}"
    return w.text("change.count", sign="+" if delta > 0 else "", delta=f"{delta:,}", pct=pct)


def rate_change(w: Words, now: Any, before: Any) -> str:
    if now is None or before is None:
        return "–"
    delta = (float(now) - float(before)) * 100
    return w.text("change.rate", sign="+" if delta > 0 else "", delta=f"{delta:.1f}")
