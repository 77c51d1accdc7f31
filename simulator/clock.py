"""Time: local hours, the event-time arrival process and fast timestamp formatting. Pure
functions of their inputs; the wall clock is passed in. Times people type (--start,
--spike-at, --duration) are parsed by the one grammar, hangwatch.platform.timeparse."""

from __future__ import annotations

import random
from typing import Final

from hangwatch.schemas.call_outcome import format_ts

# Asia/Shanghai has had no daylight saving time since 1991, so a fixed offset is exact and
# far cheaper on the hot path than zoneinfo.
LOCAL_OFFSET_S: Final = 8 * 3600
QUIET_START_H: Final = 22  # compliance quiet hours are [22:00, 08:00) local time
QUIET_END_H: Final = 8
_DAY_S: Final = 86_400


def local_hour(ms: int) -> int:
    return (ms // 3_600_000 + LOCAL_OFFSET_S // 3600) % 24


def is_quiet(ms: int) -> bool:
    h = local_hour(ms)
    return h >= QUIET_START_H or h < QUIET_END_H


def quiet_intensity(share: float) -> float:
    """Call intensity in quiet hours relative to the day (1.0) such that `share` of all calls
    fall in quiet hours: share = 10 q / (10 q + 14), 10 quiet and 14 day hours."""
    return 14 * share / (10 * (1 - share))


def _next_boundary_ms(t_ms: int) -> int:
    """The next 08:00 or 22:00 local time strictly after t_ms. Integer ms, so that a time
    exactly on a boundary is never mistaken, by float rounding, for one just before it."""
    day_ms = (t_ms + LOCAL_OFFSET_S * 1000) % (_DAY_S * 1000)
    if day_ms < QUIET_END_H * 3_600_000:
        return t_ms + QUIET_END_H * 3_600_000 - day_ms
    if day_ms < QUIET_START_H * 3_600_000:
        return t_ms + QUIET_START_H * 3_600_000 - day_ms
    return t_ms + _DAY_S * 1000 - day_ms + QUIET_END_H * 3_600_000


# A call centre's day (local hour -> call volume relative to the mean of the day hours 08-22):
# a slow start at 08:00, the morning peak, the lunch dip, the afternoon peak, a thin evening.
DAILY_RHYTHM: Final = (
    1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0,  # quiet hours: scaled by the quiet intensity instead
    0.6, 1.3, 1.45, 1.35, 0.7, 0.8, 1.25, 1.4, 1.35, 1.2, 0.9, 0.75, 0.55, 0.4, 1.0, 1.0,
)


def _next_hour_ms(t_ms: int) -> int:
    return (t_ms // 3_600_000 + 1) * 3_600_000


class ArrivalClock:
    """Event times of a Poisson process at `rate` calls/s by day and `rate * quiet` calls/s in
    quiet hours (quiet = 0 skips them entirely). With `hourly` (24 factors by local hour, e.g.
    DAILY_RHYTHM) the day's intensity also follows the hour. Times never go backwards."""

    def __init__(self, start_ms: int, rate: float, quiet: float, rng: random.Random,
                 hourly: tuple[float, ...] | None = None) -> None:
        if hourly is not None and (len(hourly) != 24 or any(f < 0 for f in hourly)):
            raise ValueError("hourly needs 24 factors >= 0")
        self._t = start_ms / 1000
        self._rate = rate
        self._quiet = quiet
        self._hourly = hourly
        self._rng = rng
        self._enter(start_ms)

    def _enter(self, t_ms: int) -> None:
        """Cache the intensity of the regime (day or quiet hours; the hour with `hourly`) t_ms is
        in, and where it ends."""
        quiet = is_quiet(t_ms)
        self._lam = self._rate * (self._quiet if quiet else 1.0)
        boundary_ms = _next_boundary_ms(t_ms)
        if self._hourly is not None:
            if not quiet:
                self._lam *= self._hourly[local_hour(t_ms)]
            boundary_ms = min(boundary_ms, _next_hour_ms(t_ms))
        self._boundary = boundary_ms / 1000
        self._boundary_ms = boundary_ms

    def next_ms(self) -> int:
        t = self._t
        while True:
            if self._lam > 0:
                nxt = t + self._rng.expovariate(self._lam)
                if nxt < self._boundary:
                    break
            # The intensity changes at the boundary; the exponential is memoryless, so drawing
            # afresh from the boundary with the new intensity is exact.
            t = self._boundary
            self._enter(self._boundary_ms)
        self._t = nxt
        return int(nxt * 1000)


class TsFormatter:
    """format_ts with the per-second prefix cached: events come in time order, so consecutive
    calls mostly share the second. Output is identical to schemas.call_outcome.format_ts."""

    __slots__ = ("_prefix", "_sec")

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def __call__(self, ms: int) -> str:
        sec = ms // 1000
        if sec != self._sec:
            self._sec = sec
            self._prefix = format_ts(sec * 1000)[:-4]  # drop "000Z"
        return f"{self._prefix}{ms % 1000:03d}Z"
