"""Spike alerts: a window's hang-up rate clearly above what is normal for that series at that
hour (docs/contract.md).

The worker calls `on_final_window` once per FINAL tumbling window of each (dimension, value)
of ALERT_DIMENSIONS (branch, campaign, script_version), in increasing window start; windows
without calls never arrive and count as empty. The state per (dimension, value) is a small
`SpikeState` kept in the merge stage's state (and its changelog): hourly sums of the series'
normal windows over the last `seasonal_days` days.

Decision rule, per window W of (dimension, value), H = W's hour (start - start mod 3600):
- Only windows that were NOT part of an alert (the firing window and every later window up to,
  not including, the resolving one) enter any baseline. An incident must not raise its own
  baseline: a long incident would otherwise resolve itself by becoming "normal".
- Seasonal baseline (the daily rhythm: lunch and evening hang up more): the series' normal
  windows in the same hour of the previous `seasonal_days` days (hours H - k x 24 h, k = 1..
  seasonal_days). Used when it holds >= `min_seasonal_connected` connected calls; the margin is
  then `seasonal_relative_increase`.
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
  The drift term makes the test demand a relative excess where traffic is high (where a
  binomial test would page for a few percent of mix shift) and costs almost nothing at 150
  calls per window, where the margin of the former rule cost the most recall.
- W is spiking when connected >= min_connected, its baseline connected >= min_baseline_connected
  and z(W) > `z`; or (pair_z > 0, W has connected calls, the window just before it arrived
  and had a sufficient baseline, the two hold >= min_connected) z(previous, W) > `pair_z`: a
  spike that began inside the previous window is seen with twice the calls. Each window keeps
  its own baseline in the pair: across an hour boundary (13:55 lunch, 14:00 afternoon) the
  previous window is not judged against the next hour's rate.
- Thresholds for many tests: about 100 series x 168 calling windows a day are judged, so a
  per-window false-alarm probability of the order of 1e-5 is needed for at most one false
  alert a day per 100 series; window counts have heavier tails than binomial (the simulator's
  retry waves), hence z 4 rather than the normal quantile.
- No alert open and W spiking: fire (status firing, version 1, alert_id
  "<dimension>|<value>|<W start>"). Alert open and W spiking: nothing is emitted.
- Alert open and W not spiking: the alert resolves (same alert_id, status resolved, version 2)
  at the `resolve_after_windows`-th consecutive non-spiking window (empty gap windows count).
  Hysteresis: the default 2 keeps one noisy window inside a running incident from closing it
  and opening a second incident five minutes later.
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

STATE_VERSION: Final = 3  # 1: per-window history, 2: no baseline of the last window (both still decoded)
DAY_S: Final = 86_400
HOUR_S: Final = 3_600


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
    window_size_s: int = 300
    baseline_s: int = 86_400  # span of the trailing baseline (the fallback)
    min_connected: int = 30
    min_baseline_connected: int = 100
    z: float = 4.0
    min_relative_increase: float = 0.5  # margin over the trailing baseline (absorbs the daily rhythm)
    resolve_after_windows: int = 2  # consecutive non-spiking windows that resolve an alert
    timezone: str = "Asia/Shanghai"  # only for the times in explanations
    seasonal_days: int = 7  # same hour of the previous days; 0 = trailing baseline only
    min_seasonal_connected: int = 300
    seasonal_relative_increase: float = 0.0  # margin over the seasonal baseline
    pair_z: float = 4.0  # > 0: a window also spikes when it and the previous window, summed, pass at this z
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


class SpikeState:
    """Per (dimension, value): hourly sums of the normal final windows and the open alert.

    hours          [[hour_start_s, connected, hung_up], ...] in hour order: the series' windows
                   that were not part of an alert, summed per hour, as far back as the baselines
                   reach (max(seasonal_days x 24 h, baseline_s) + 1 h).
    last_start_s   start of the last window applied (replays at or before it are ignored).
    alert_start_s  start of the window that fired the open alert (its id), or None.
    clear_streak   consecutive non-spiking windows seen while the alert is open.
    last_counts    [connected, hung_up, baseline_connected, baseline_hung_up, seasonal 0/1] of
                   the window last_start_s (the pair test's previous window, with its own
                   baseline; baseline_connected 0: unknown, no pair test).
    """

    __slots__ = ("alert_start_s", "clear_streak", "hours", "last_counts", "last_start_s")

    def __init__(self, hours: list[list[int]] | None = None, last_start_s: int | None = None,
                 alert_start_s: int | None = None, clear_streak: int = 0,
                 last_counts: list[int] | None = None) -> None:
        self.hours: list[list[int]] = hours if hours is not None else []
        self.last_start_s = last_start_s
        self.alert_start_s = alert_start_s
        self.clear_streak = clear_streak
        self.last_counts: list[int] = last_counts if last_counts is not None else [0, 0, 0, 0, 0]  # of last_start_s

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": STATE_VERSION, "b": self.hours, "l": self.last_start_s,
                             "a": self.alert_start_s, "c": self.clear_streak, "p": self.last_counts})

    @classmethod
    def from_bytes(cls, data: bytes) -> SpikeState:
        d = orjson.loads(data)
        v = d.get("v")
        if v == 1:  # per-window history [start, connected, hung_up, in_alert]: sum the normal ones per hour
            hours: list[list[int]] = []
            for start, conn, hung, in_alert in d["h"]:
                if not in_alert:
                    _add_hour(hours, start - start % HOUR_S, conn, hung)
            return cls(hours, d["l"], d["a"], d["c"])
        if v == 2:  # last_counts without the last window's baseline: no pair test for the next window
            return cls(d["b"], d["l"], d["a"], d["c"], [d["p"][0], d["p"][1], 0, 0, 0])
        if v != STATE_VERSION:
            raise ValueError(f"unsupported SpikeState version {v!r}")
        return cls(d["b"], d["l"], d["a"], d["c"], d["p"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpikeState) and self.to_bytes() == other.to_bytes()

    def __repr__(self) -> str:
        return (f"SpikeState(hours={len(self.hours)}, last_start_s={self.last_start_s}, "
                f"alert_start_s={self.alert_start_s}, clear_streak={self.clear_streak})")


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
            bc, bh, seasonal = baseline(st.hours, at, cfg)
            out.append(_record("resolved", dimension, value, st.alert_start_s, at, 0, 0, bc, bh, seasonal, cfg,
                               now_ms, 0.0, False))
            st.alert_start_s, st.clear_streak = None, 0
        elif gap > 0:
            st.clear_streak += gap
    bc, bh, seasonal = baseline(st.hours, window_start_s, cfg)
    z = -math.inf
    pair = False
    if connected >= cfg.min_connected and bc >= cfg.min_baseline_connected:
        z = evidence([(connected, hung_up, bc, bh, _margin(cfg, seasonal))], cfg.rate_drift)
    spiking = z > cfg.z
    prev = st.last_counts
    if (not spiking and connected and cfg.pair_z > 0 and st.last_start_s == window_start_s - size
            and bc >= cfg.min_baseline_connected and prev[2] >= cfg.min_baseline_connected
            and prev[0] + connected >= cfg.min_connected):
        pz = evidence([(prev[0], prev[1], prev[2], prev[3], _margin(cfg, prev[4] == 1)),
                       (connected, hung_up, bc, bh, _margin(cfg, seasonal))], cfg.rate_drift)
        if pz > cfg.pair_z:
            spiking, pair, z = True, True, pz
    in_alert = False
    if st.alert_start_s is None:
        if spiking:
            st.alert_start_s, st.clear_streak, in_alert = window_start_s, 0, True
            out.append(_record("firing", dimension, value, window_start_s, window_start_s, connected, hung_up, bc, bh,
                               seasonal, cfg, now_ms, z, pair))
    elif spiking:
        st.clear_streak, in_alert = 0, True
    else:
        st.clear_streak += 1
        if st.clear_streak >= cfg.resolve_after_windows:
            out.append(_record("resolved", dimension, value, st.alert_start_s, window_start_s, connected, hung_up,
                               bc, bh, seasonal, cfg, now_ms, 0.0, False))
            st.alert_start_s, st.clear_streak = None, 0
        else:
            in_alert = True
    if connected and not in_alert:  # an empty window adds nothing to any baseline
        _add_hour(st.hours, window_start_s - window_start_s % HOUR_S, connected, hung_up)
    keep_from = window_start_s - window_start_s % HOUR_S - max(cfg.seasonal_days * DAY_S, cfg.baseline_s)
    if st.hours and st.hours[0][0] < keep_from:
        st.hours = [w for w in st.hours if w[0] >= keep_from]
    st.last_start_s = window_start_s
    st.last_counts = [connected, hung_up, bc, bh, 1 if seasonal else 0]
    return st, out


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


def _record(status: str, dimension: str, value: str, alert_start_s: int, window_start_s: int, connected: int,
            hung_up: int, base_c: int, base_h: int, seasonal: bool, cfg: AlertConfig, now_ms: int, z: float,
            pair: bool) -> HangupAlert:
    size = cfg.window_size_s
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
        with_before = " (with the window before)" if pair else ""
        explanation = (f"{dimension} {value}: hang-up rate {rate:.0%} ({hung_up}/{connected} connected) {span} {vs}; "
                       f"{above}{with_before}; {_percent(conf)} Wilson lower bound {low:.0%}")
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
