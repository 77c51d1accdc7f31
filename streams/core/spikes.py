"""Spike alerts: the hang-up rate of the last few minutes of a series clearly above what is
normal for that series at that hour (docs/contract.md).

The worker calls `on_final_window` once per FINAL tumbling window of `window_size_s` (60 s)
of each (dimension, value) of ALERT_DIMENSIONS (branch, campaign, script_version), in
increasing window start; windows without calls never arrive and count as empty. The state per
(dimension, value) is a small `SpikeState` kept in the merge stage's state (and its changelog):
hourly sums of the series' normal windows over the last `seasonal_days` days, the open alert,
and the last `scan_windows` windows with their own baselines (the scan's span).

Decision rule, per window W of (dimension, value), H = W's hour (start - start mod 3600):
- Only windows that were NOT part of an alert (the firing window and every later window up to,
  not including, the resolving one) enter any baseline. An incident must not raise its own
  baseline: a long incident would otherwise resolve itself by becoming "normal".
- Seasonal baseline (the daily rhythm: lunch and evening hang up more): the series' normal
  windows in the same hour of the previous `seasonal_days` days (hours H - k x 24 h, k = 1..
  seasonal_days). Used when it holds >= `min_seasonal_connected` connected calls; the margin is
  then `seasonal_relative_increase`. It depends only on hours before H, so it is computed once
  per hour (a cache outside the serialised state).
- Otherwise (a new series, the first days) the trailing baseline: the normal windows of the
  hours [H - baseline_s, H] (the previous `baseline_s` and the current hour so far), with the
  wider margin `min_relative_increase`, which must absorb the daily rhythm itself.
- Evidence of a set of windows (`evidence`): each window i has its OWN baseline (bc_i
  connected, bh_i hung up, computed when it was judged) and margin m_i; p_i = bh_i / bc_i x
  (1 + m_i), expected hang-ups e_i = c_i p_i. With E = sum e_i and H = sum h_i,

      z = (H - E) / sqrt(sum c_i p_i (1 - p_i) + (sum c_i sqrt(p_i (1 - p_i) / bc_i))^2 + (drift x E)^2)

  the binomial variance of the windows, the baseline's own sampling error (taken as common to
  the windows: conservative), and `rate_drift`, the relative wander of a series' rate around
  its seasonal baseline over minutes to an hour (the mix of first calls and retries moves;
  measured ~3-5 % on the simulator, bench/HISTORY.md). With drift 0, one window and a baseline
  of many calls (its error term vanishes), z > `z` is "the Wilson lower bound at `z` is above
  baseline x (1 + margin)" (the Wilson interval is the score test's).
- The scan (`scan`): W has connected calls, and some span of the last k windows ending with W,
  `min_scan_windows` <= k <= `scan_windows` (k counts windows in time: empty windows inside
  it hold nothing), holds >= `min_connected` connected calls, every window of it that arrived
  had a baseline of >= `min_baseline_connected`, and its evidence is z > `z`: W is spiking.
  The shortest such span is the alert's window. A spike is seen on the first minutes that
  carry enough of it, whatever their place in a 5-minute grid (the 5-minute windows of the
  former rule saw a spike starting late in one only in the next: bench/HISTORY.md, third
  round). The span starts after the last resolved alert (the scan forgets the windows of an
  incident when it resolves), so alert ids increase.
- Thresholds for many tests: about 100 series x 600 calling minutes a day, each with up to
  `scan_windows` overlapping spans, are judged, and window counts have heavier tails than
  binomial (the simulator's retry waves): z 4.6 with spans of 2 to 10 minutes keeps false alerts
  under one a day per 100 series on the benchmark (one-minute spans alone are the most skewed:
  `min_scan_windows` 2).
- No alert open and W spiking: fire (status firing, version 1, alert_id
  "<dimension>|<value>|<span start>", the record's window the span). Alert open and W
  spiking: nothing is emitted.
- Alert open and W not spiking: the alert resolves (same alert_id, status resolved, version 2)
  at the `resolve_after_windows`-th consecutive non-spiking window (empty gap windows count).
  Hysteresis: the default 10 (minutes) keeps a quiet stretch inside a running incident from
  closing it and opening a second incident minutes later.
- A window whose start is <= the last one seen is a replay and changes nothing (idempotent).

Consequence of the exclusion: an incident longer than the baselines' spans runs out of baseline
(too few normal calls left), stops spiking and resolves; its windows after that enter later
baselines, i.e. the new rate becomes the normal one.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime
from functools import lru_cache
from statistics import NormalDist
from typing import Final
from zoneinfo import ZoneInfo

import orjson

from hangwatch.schemas.call_outcome import format_ts
from hangwatch.schemas.records import HangupAlert

STATE_VERSION: Final = 4  # 1: per-window history, 2: no last baseline, 3: 5-minute pair (all still decoded)
DAY_S: Final = 86_400
HOUR_S: Final = 3_600
OLD_WINDOW_S: Final = 300  # the window size of the detectors that wrote states of versions 1-3


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0.0, 1.0) when n == 0.

    The ends are exact at 0 and n successes (0.0 and 1.0), not float residue: a 1e-17 lower
    bound would otherwise count as "above" a baseline rate of zero."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n]; got {successes} of {n}")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


@dataclasses.dataclass(frozen=True, slots=True)
class AlertConfig:
    window_size_s: int = 60
    baseline_s: int = 86_400  # span of the trailing baseline (the fallback)
    min_connected: int = 30  # connected calls of a span
    min_baseline_connected: int = 100
    z: float = 4.6
    min_relative_increase: float = 0.5  # margin over the trailing baseline (absorbs the daily rhythm)
    resolve_after_windows: int = 10  # consecutive non-spiking windows that resolve an alert
    timezone: str = "Asia/Shanghai"  # only for the times in explanations
    seasonal_days: int = 7  # same hour of the previous days; 0 = trailing baseline only
    min_seasonal_connected: int = 300
    seasonal_relative_increase: float = 0.0  # margin over the seasonal baseline
    scan_windows: int = 10  # longest span of the scan, in windows
    min_scan_windows: int = 2  # shortest span of the scan, in windows
    rate_drift: float = 0.03  # relative wander of a series' rate around its baseline (variance term)

    def __post_init__(self) -> None:
        if self.window_size_s <= 0 or self.baseline_s < self.window_size_s:
            raise ValueError("need window_size_s > 0 and baseline_s >= window_size_s")
        if HOUR_S % self.window_size_s:
            raise ValueError("window_size_s must divide an hour")
        if self.resolve_after_windows < 1:
            raise ValueError("resolve_after_windows must be >= 1")
        if self.seasonal_days < 0:
            raise ValueError("seasonal_days must be >= 0")
        if self.rate_drift < 0:
            raise ValueError("rate_drift must be >= 0")
        if not 1 <= self.min_scan_windows <= self.scan_windows:
            raise ValueError("need 1 <= min_scan_windows <= scan_windows")


class SpikeState:
    """Per (dimension, value): hourly sums of the normal final windows, the open alert and the
    scan's recent windows.

    hours          [[hour_start_s, connected, hung_up], ...] in hour order: the series' windows
                   that were not part of an alert, summed per hour, as far back as the baselines
                   reach (max(seasonal_days x 24 h, baseline_s) + 1 h).
    last_start_s   start of the last window applied (replays at or before it are ignored).
    alert_start_s  start of the span that fired the open alert (its id), or None.
    clear_streak   consecutive non-spiking windows seen while the alert is open.
    recent         [[start_s, connected, hung_up, baseline_connected, baseline_hung_up, seasonal 0/1], ...]
                   the windows with calls of the last scan_windows windows (since the last
                   resolved alert), each with the baseline it was judged against.

    Versions 1-3 were written by the 5-minute detector: their hours are kept, their last window
    (5 minutes from last_start_s) is taken as covering up to the minute last_start_s + 240 s
    (its minutes must not be counted twice) and an open alert's clear_streak is counted in
    minutes; the scan starts empty.
    """

    __slots__ = ("alert_start_s", "base", "clear_streak", "hours", "last_start_s", "recent")

    def __init__(self, hours: list[list[int]] | None = None, last_start_s: int | None = None,
                 alert_start_s: int | None = None, clear_streak: int = 0,
                 recent: list[list[int]] | None = None) -> None:
        self.hours: list[list[int]] = hours if hours is not None else []
        self.last_start_s = last_start_s
        self.alert_start_s = alert_start_s
        self.clear_streak = clear_streak
        self.recent: list[list[int]] = recent if recent is not None else []
        # cache, not serialised: [hour_s, connected, hung_up] of the hour's seasonal baseline
        self.base: list[int] = [-1, 0, 0]

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": STATE_VERSION, "b": self.hours, "l": self.last_start_s,
                             "a": self.alert_start_s, "c": self.clear_streak, "r": self.recent})

    @classmethod
    def from_bytes(cls, data: bytes) -> SpikeState:
        d = orjson.loads(data)
        v = d.get("v")
        if v == STATE_VERSION:
            return cls(d["b"], d["l"], d["a"], d["c"], d["r"])
        if v not in (1, 2, 3):
            raise ValueError(f"unsupported SpikeState version {v!r}")
        hours: list[list[int]]
        if v == 1:  # per-window history [start, connected, hung_up, in_alert]: sum the normal ones per hour
            hours = []
            for start, conn, hung, in_alert in d["h"]:
                if not in_alert:
                    _add_hour(hours, start - start % HOUR_S, conn, hung)
        else:
            hours = d["b"]
        last = d["l"]
        minutes = OLD_WINDOW_S // 60
        return cls(hours, None if last is None else last + OLD_WINDOW_S - 60, d["a"], d["c"] * minutes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpikeState) and self.to_bytes() == other.to_bytes()

    def __repr__(self) -> str:
        return (f"SpikeState(hours={len(self.hours)}, last_start_s={self.last_start_s}, "
                f"alert_start_s={self.alert_start_s}, clear_streak={self.clear_streak}, recent={len(self.recent)})")


def _add_hour(hours: list[list[int]], hour_s: int, connected: int, hung_up: int) -> None:
    """Add to the hour's sums (hours are applied in increasing order: the last or a new entry)."""
    if hours and hours[-1][0] == hour_s:
        hours[-1][1] += connected
        hours[-1][2] += hung_up
    else:
        hours.append([hour_s, connected, hung_up])


def baseline(hours: list[list[int]], window_start_s: int, cfg: AlertConfig) -> tuple[int, int, bool]:
    """(connected, hung_up, seasonal) of the baseline of the window starting at window_start_s:
    the same hour of the previous seasonal_days days when it holds min_seasonal_connected,
    else the hours [H - baseline_s, H] (module docstring)."""
    hour = window_start_s - window_start_s % HOUR_S
    if cfg.seasonal_days > 0:
        sc = sh = 0
        first = hour - cfg.seasonal_days * DAY_S
        for start, conn, hung in hours:
            if first <= start < hour and (hour - start) % DAY_S == 0:
                sc += conn
                sh += hung
        if sc >= cfg.min_seasonal_connected:
            return sc, sh, True
    lo = hour - cfg.baseline_s
    c = h = 0
    for start, conn, hung in hours:
        if lo <= start <= hour:
            c += conn
            h += hung
    return c, h, False


def _baseline(st: SpikeState, window_start_s: int, cfg: AlertConfig) -> tuple[int, int, bool]:
    """baseline(), with the hour's seasonal baseline cached in the state (it depends only on
    hours before the window's: the same value for every window of the hour)."""
    hour = window_start_s - window_start_s % HOUR_S
    b = st.base
    if b[0] == hour:
        return b[1], b[2], True
    bc, bh, seasonal = baseline(st.hours, window_start_s, cfg)
    if seasonal:
        st.base = [hour, bc, bh]
    return bc, bh, seasonal


def on_final_window(state: SpikeState | None, dimension: str, value: str, window_start_s: int, connected: int,
                    hung_up: int, cfg: AlertConfig, now_ms: int) -> tuple[SpikeState, list[HangupAlert]]:
    """Apply one final window of (dimension, value); return the updated state (the given one,
    updated in place) and the alert records to emit (firing and/or resolved)."""
    st = state if state is not None else SpikeState()
    if st.last_start_s is not None and window_start_s <= st.last_start_s:
        return st, []
    if not 0 <= hung_up <= connected:
        raise ValueError(f"need 0 <= hung_up <= connected; got {hung_up} of {connected}")
    size = cfg.window_size_s
    out: list[HangupAlert] = []
    if st.alert_start_s is not None and st.last_start_s is not None:
        gap = (window_start_s - st.last_start_s) // size - 1  # empty windows in between
        need = cfg.resolve_after_windows - st.clear_streak
        if gap >= need:
            at = st.last_start_s + need * size
            bc, bh, seasonal = _baseline(st, at, cfg)
            out.append(_record("resolved", dimension, value, st.alert_start_s, at, size, 0, 0, bc, bh, seasonal,
                               cfg, now_ms, 0.0))
            st.alert_start_s, st.clear_streak, st.recent = None, 0, []
        elif gap > 0:
            st.clear_streak += gap
    bc, bh, seasonal = _baseline(st, window_start_s, cfg)
    first = window_start_s - (cfg.scan_windows - 1) * size
    recent = [w for w in st.recent if w[0] >= first]
    recent.append([window_start_s, connected, hung_up, bc, bh, 1 if seasonal else 0])
    st.recent = recent
    z, span_start = scan(recent, cfg) if connected else (-math.inf, window_start_s)
    spiking = z > cfg.z
    in_alert = False
    if st.alert_start_s is None:
        if spiking:
            st.alert_start_s, st.clear_streak, in_alert = span_start, 0, True
            sc = sh = 0
            for w in recent:
                if w[0] >= span_start:
                    sc += w[1]
                    sh += w[2]
            out.append(_record("firing", dimension, value, span_start, span_start, window_start_s + size - span_start,
                               sc, sh, bc, bh, seasonal, cfg, now_ms, z))
    elif spiking:
        st.clear_streak, in_alert = 0, True
    else:
        st.clear_streak += 1
        if st.clear_streak >= cfg.resolve_after_windows:
            out.append(_record("resolved", dimension, value, st.alert_start_s, window_start_s, size, connected,
                               hung_up, bc, bh, seasonal, cfg, now_ms, 0.0))
            st.alert_start_s, st.clear_streak, st.recent = None, 0, []
        else:
            in_alert = True
    if connected and not in_alert:  # an empty window adds nothing to any baseline
        _add_hour(st.hours, window_start_s - window_start_s % HOUR_S, connected, hung_up)
    keep_from = window_start_s - window_start_s % HOUR_S - max(cfg.seasonal_days * DAY_S, cfg.baseline_s)
    if st.hours and st.hours[0][0] < keep_from:
        st.hours = [w for w in st.hours if w[0] >= keep_from]
    st.last_start_s = window_start_s
    return st, out


def scan(recent: list[list[int]], cfg: AlertConfig) -> tuple[float, int]:
    """(z, span start) of the scan over the spans ending with the last of `recent` (module
    docstring): the shortest span whose evidence passes cfg.z, else the highest z of any span
    (-inf when no span qualifies). recent: [start_s, connected, hung_up, baseline_connected,
    baseline_hung_up, seasonal 0/1] in start order, the last one the window judged; each span is
    the same sum as evidence() of its windows (tests check it), accumulated from the newest."""
    size = cfg.window_size_s
    last = recent[-1][0]
    hung = 0
    conn = 0
    expected = binomial = base_sd = 0.0
    best, best_start = -math.inf, last
    for i in range(len(recent) - 1, -1, -1):
        start, c, h, bc, bh, seasonal = recent[i]
        if bc < cfg.min_baseline_connected:
            break
        p = bh / bc * (1.0 + _margin(cfg, seasonal == 1))
        if p >= 1.0:
            break
        conn += c
        hung += h
        expected += c * p
        binomial += c * p * (1.0 - p)
        base_sd += c * math.sqrt(p * (1.0 - p) / bc)
        if (last - start) // size + 1 < cfg.min_scan_windows or conn < cfg.min_connected:
            continue
        var = binomial + base_sd * base_sd + (cfg.rate_drift * expected) * (cfg.rate_drift * expected)
        excess = hung - expected
        z = (math.inf if excess > 0 else -math.inf) if var <= 0.0 else excess / math.sqrt(var)
        if z > cfg.z:
            return z, start
        if z > best:
            best, best_start = z, start
    return best, best_start


def _margin(cfg: AlertConfig, seasonal: bool) -> float:
    return cfg.seasonal_relative_increase if seasonal else cfg.min_relative_increase


def evidence(windows: list[tuple[int, int, int, int, float]], drift: float) -> float:
    """Standard deviations by which the windows' hang-ups exceed what their baselines expect
    (module docstring). windows: (connected, hung_up, baseline_connected, baseline_hung_up,
    margin), each baseline_connected > 0. +inf when the excess is certain (a baseline without
    hang-ups and some now), -inf when none is possible (baseline rate x (1 + margin) >= 1)."""
    hung = 0
    expected = binomial = base_sd = 0.0
    for c, h, bc, bh, margin in windows:
        p = bh / bc * (1.0 + margin)
        if p >= 1.0:
            return -math.inf
        hung += h
        expected += c * p
        binomial += c * p * (1.0 - p)
        base_sd += c * math.sqrt(p * (1.0 - p) / bc)
    excess = hung - expected
    var = binomial + base_sd * base_sd + (drift * expected) * (drift * expected)
    if var <= 0.0:
        return math.inf if excess > 0 else -math.inf
    return excess / math.sqrt(var)


def _record(status: str, dimension: str, value: str, alert_start_s: int, window_start_s: int, size: int,
            connected: int, hung_up: int, base_c: int, base_h: int, seasonal: bool, cfg: AlertConfig, now_ms: int,
            z: float) -> HangupAlert:
    """The record of a transition; its window is [window_start_s, + size): the span that fired,
    or the window that resolved the alert."""
    low, high = wilson_interval(hung_up, connected, cfg.z)
    rate = hung_up / connected if connected else 0.0
    base_rate = base_h / base_c if base_c else 0.0
    span = f"in {_duration(size)} from {_local(window_start_s, cfg.timezone)}"
    over = (f"at the same hour of the previous {cfg.seasonal_days} days" if seasonal
            else f"over the previous {_duration(cfg.baseline_s)}")
    vs = f"vs {base_rate:.0%} baseline ({base_c:,} connected) {over}"
    if status == "firing":
        conf = 2 * NormalDist().cdf(cfg.z) - 1
        above = "above a baseline without hang-ups" if math.isinf(z) else f"{z:.1f} standard deviations above it"
        explanation = (f"{dimension} {value}: hang-up rate {rate:.0%} ({hung_up}/{connected} connected) {span} {vs}; "
                       f"{above}; {_percent(conf)} Wilson lower bound {low:.0%}")
    else:
        since = f"firing since {_local(alert_start_s, cfg.timezone, with_date=False)}"
        lasted = _duration(window_start_s - alert_start_s)
        now = (f"hang-up rate back to {rate:.0%} ({hung_up}/{connected} connected)" if connected
               else "no connected calls")
        explanation = f"{dimension} {value}: {now} {span} {vs}; {since} ({lasted})"
    return {
        "alert_id": f"{dimension}|{value}|{alert_start_s}",
        "status": "firing" if status == "firing" else "resolved",
        "dimension": dimension,
        "value": value,
        "window_size_s": size,
        "window_start": format_ts(window_start_s * 1000),
        "window_end": format_ts((window_start_s + size) * 1000),
        "connected": connected,
        "hung_up": hung_up,
        "hangup_rate": rate,
        "wilson_low": low,
        "wilson_high": high,
        "baseline_rate": base_rate,
        "baseline_connected": base_c,
        "explanation": explanation,
        "version": 1 if status == "firing" else 2,
        "emitted_at": format_ts(now_ms),
    }


def _percent(x: float) -> str:
    """0.95 -> '95%', 0.99953 -> '99.95%': as many decimals as it takes not to round to 100%."""
    for digits in range(0, 6):
        text = f"{x * 100:.{digits}f}"
        if float(text) < 100.0 or digits == 5:
            return text + "%"
    return f"{x:.0%}"


@lru_cache(maxsize=16)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _local(start_s: int, tz: str, with_date: bool = True) -> str:
    dt = datetime.fromtimestamp(start_s, _zone(tz))
    return dt.strftime("%Y-%m-%d %H:%M %z" if with_date else "%H:%M")


def _duration(seconds: int) -> str:
    """300 -> '5 min', 86400 -> '24 h', 5400 -> '1 h 30 min'."""
    h, rem = divmod(seconds, 3600)
    m = rem // 60
    if h and m:
        return f"{h} h {m} min"
    return f"{h} h" if h else f"{m} min"
