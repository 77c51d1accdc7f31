"""The one time grammar (hangwatch.platform.timeparse): durations, anchors, ISO times read in
the configured zone, ranges, and errors that name the forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from hangwatch.platform.settings import Settings
from hangwatch.platform.timeparse import (
    TimeParseError,
    format_local,
    local_zone,
    parse_duration,
    parse_range,
    parse_time,
    to_ms,
    zone,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("2h", 7200), ("1h30m", 5400), ("7d", 7 * 86400), ("2w", 14 * 86400),
    ("900", 900), ("1.5h", 5400), (" 2H ", 7200), ("0", 0),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["soon", "", "1x", "h1", "-5", "1h-30m"])
def test_bad_durations_name_the_forms(text: str) -> None:
    with pytest.raises(TimeParseError, match=r"90s, 15m, 2h, 1h30m, 7d, 2w or plain seconds"):
        parse_duration(text)


def _t(text: str, **kw: object) -> datetime:
    return parse_time(text, now=NOW, tz=SHANGHAI, **kw)  # type: ignore[arg-type]


def test_a_duration_counts_back_from_now_or_the_base() -> None:
    assert _t("24h") == NOW - timedelta(hours=24)
    assert _t("1h30m") == NOW - timedelta(minutes=90)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    assert _t("2h", base=base) == base - timedelta(hours=2)


def test_anchors() -> None:
    assert _t("now") == NOW
    assert _t("now-2h") == NOW - timedelta(hours=2)
    assert _t("now + 10m") == NOW + timedelta(minutes=10)
    # Calendar days are local: today began at 00:00 Shanghai = 16:00 UTC the day before.
    assert _t("today") == datetime(2026, 12, 2, 16, tzinfo=UTC)
    assert _t("yesterday") == datetime(2026, 12, 1, 16, tzinfo=UTC)
    assert _t("yesterday+8h") == datetime(2026, 12, 2, 0, tzinfo=UTC)
    start = datetime(2026, 11, 27, tzinfo=UTC)
    assert _t("start+1h", anchors={"start": start}) == start + timedelta(hours=1)
    assert _t("START-30m", anchors={"start": start}) == start - timedelta(minutes=30)


def test_today_just_after_local_midnight() -> None:
    # 00:30 Shanghai on Dec 3 is 16:30 UTC on Dec 2: "today" is Dec 3 local.
    now = datetime(2026, 12, 2, 16, 30, tzinfo=UTC)
    assert parse_time("today", now=now, tz=SHANGHAI) == datetime(2026, 12, 2, 16, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-03T15:30:00+08:00", datetime(2026, 12, 3, 7, 30, tzinfo=UTC)),
    ("2026-12-03T07:30:00Z", datetime(2026, 12, 3, 7, 30, tzinfo=UTC)),
    ("2026-12-03T07:30:00z", datetime(2026, 12, 3, 7, 30, tzinfo=UTC)),
    # Without an offset: the configured zone (Shanghai, UTC+8, no DST).
    ("2026-12-03 15:30", datetime(2026, 12, 3, 7, 30, tzinfo=UTC)),
    ("2026-12-03T15:30", datetime(2026, 12, 3, 7, 30, tzinfo=UTC)),
    ("2026-12-03", datetime(2026, 12, 2, 16, tzinfo=UTC)),
    ("2026-07-01 12:00", datetime(2026, 7, 1, 4, tzinfo=UTC)),  # summer: still +8
])
def test_iso_times(text: str, expected: datetime) -> None:
    got = _t(text)
    assert got == expected and got.tzinfo == UTC


def test_a_zone_with_dst_reads_local_times_in_their_season() -> None:
    berlin = zone("Europe/Berlin")
    assert parse_time("2026-07-01 12:00", now=NOW, tz=berlin) == datetime(2026, 7, 1, 10, tzinfo=UTC)
    assert parse_time("2026-12-01 12:00", now=NOW, tz=berlin) == datetime(2026, 12, 1, 11, tzinfo=UTC)


@pytest.mark.parametrize("text", ["soon", "now-2x", "tomorrow", "2026-13-01", "", "start+1h"])
def test_bad_times_name_the_forms(text: str) -> None:
    with pytest.raises(TimeParseError) as e:
        _t(text)
    msg = str(e.value)
    assert "now-2h" in msg or "duration" in msg
    assert "\n" not in msg


def test_unknown_zone() -> None:
    with pytest.raises(TimeParseError, match="IANA"):
        zone("Mars/Olympus")


def test_ranges() -> None:
    assert parse_range("2h", None, now=NOW, tz=SHANGHAI) == (NOW - timedelta(hours=2), NOW)
    # A bare duration in --since counts back from --until.
    start, end = parse_range("1h", "2026-12-03 08:00", now=NOW, tz=SHANGHAI)
    assert end == datetime(2026, 12, 3, 0, tzinfo=UTC) and start == end - timedelta(hours=1)
    assert parse_range("yesterday", "today", now=NOW, tz=SHANGHAI) == (
        datetime(2026, 12, 1, 16, tzinfo=UTC), datetime(2026, 12, 2, 16, tzinfo=UTC))
    with pytest.raises(TimeParseError, match="must be before"):
        parse_range("now", "now-1h", now=NOW, tz=SHANGHAI)


def test_helpers() -> None:
    assert to_ms(datetime(2026, 1, 1, tzinfo=UTC)) == 1_767_225_600_000
    assert format_local(NOW, SHANGHAI) == "2026-12-03 10:00 +0800"
    assert local_zone(Settings()) == SHANGHAI
    assert local_zone(Settings(worker={"timezone": "UTC"})) == ZoneInfo("UTC")  # type: ignore[arg-type]
