"""Spike alerts: a window's hang-up rate clearly above its own trailing baseline (docs/contract.md).

The worker calls `on_final_window` once per FINAL tumbling window of each (dimension, value)
of ALERT_DIMENSIONS (branch, campaign, script_version), in increasing window start; windows
without calls never arrive and count as empty. The state per (dimension, value) is a small
`SpikeState` kept in the merge stage's state (and its changelog).

Decision rule, per window W of (dimension, value):
- baseline = the same (dimension, value)'s final windows with start in [W - baseline_s, W),
  EXCLUDING windows that were part of an alert (the firing window and every later window up to,
  not including, the resolving one). An incident must not raise its own baseline: a long
  incident would otherwise resolve itself by becoming "normal" and later incidents of the same
  size would pass unnoticed.
- W is spiking when connected >= min_connected, baseline connected >= min_baseline_connected,
  and the Wilson lower bound of W's hang-up rate > baseline_rate * (1 + min_relative_increase).
  The lower bound (not the point estimate) keeps small noisy windows from firing.
- No alert open and W spiking: fire (status firing, version 1, alert_id
  "<dimension>|<value>|<W start>"). Alert open and W spiking: nothing is emitted.
- Alert open and W not spiking: the alert resolves (same alert_id, status resolved, version 2)
  at the `resolve_after_windows`-th consecutive non-spiking window (empty gap windows count).
  Hysteresis: the default 2 keeps one noisy window inside a running incident (the strict lower
  bound test fails often near the threshold) from closing it and opening a second incident five
  minutes later; 1 gives "resolve at the first non-spiking window".
- A window whose start is <= the last one seen is a replay and changes nothing (idempotent).

Consequence of the exclusion: an incident longer than the baseline span runs out of baseline
(fewer than min_baseline_connected normal calls left in the span), stops spiking and resolves;
its windows after that enter later baselines, i.e. the new rate becomes the normal one.
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

STATE_VERSION: Final = 1


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
    baseline_s: int = 86_400
    min_connected: int = 30
    min_baseline_connected: int = 100
    z: float = 1.96
    min_relative_increase: float = 0.0
    resolve_after_windows: int = 2  # consecutive non-spiking windows that resolve an alert
    timezone: str = "Asia/Shanghai"  # only for the times in explanations

    def __post_init__(self) -> None:
        if self.window_size_s <= 0 or self.baseline_s < self.window_size_s:
            raise ValueError("need window_size_s > 0 and baseline_s >= window_size_s")
        if self.resolve_after_windows < 1:
            raise ValueError("resolve_after_windows must be >= 1")


class SpikeState:
    """Per (dimension, value): final windows within the baseline span and the open alert.

    history        [[window_start_s, connected, hung_up, in_alert], ...] in start order; in_alert
                   windows are left out of later baselines.
    last_start_s   start of the last window applied (replays at or before it are ignored).
    alert_start_s  start of the window that fired the open alert (its id), or None.
    clear_streak   consecutive non-spiking windows seen while the alert is open.
    """

    __slots__ = ("alert_start_s", "clear_streak", "history", "last_start_s")

    def __init__(self, history: list[list[int]] | None = None, last_start_s: int | None = None,
                 alert_start_s: int | None = None, clear_streak: int = 0) -> None:
        self.history: list[list[int]] = history if history is not None else []
        self.last_start_s = last_start_s
        self.alert_start_s = alert_start_s
        self.clear_streak = clear_streak

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": STATE_VERSION, "h": self.history, "l": self.last_start_s,
                             "a": self.alert_start_s, "c": self.clear_streak})

    @classmethod
    def from_bytes(cls, data: bytes) -> SpikeState:
        d = orjson.loads(data)
        if d.get("v") != STATE_VERSION:
            raise ValueError(f"unsupported SpikeState version {d.get('v')!r}")
        return cls(d["h"], d["l"], d["a"], d["c"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpikeState) and self.to_bytes() == other.to_bytes()

    def __repr__(self) -> str:
        return (f"SpikeState(windows={len(self.history)}, last_start_s={self.last_start_s}, "
                f"alert_start_s={self.alert_start_s}, clear_streak={self.clear_streak})")


def baseline(history: list[list[int]], window_start_s: int, cfg: AlertConfig) -> tuple[int, int]:
    """(connected, hung_up) over the non-alert final windows in [start - baseline_s, start)."""
    lo = window_start_s - cfg.baseline_s
    c = h = 0
    for start, conn, hung, in_alert in history:
        if lo <= start < window_start_s and not in_alert:
            c += conn
            h += hung
    return c, h


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
            bc, bh = baseline(st.history, at, cfg)
            out.append(_record("resolved", dimension, value, st.alert_start_s, at, 0, 0, bc, bh, cfg, now_ms))
            st.alert_start_s, st.clear_streak = None, 0
        elif gap > 0:
            st.clear_streak += gap
    bc, bh = baseline(st.history, window_start_s, cfg)
    spiking = is_spiking(connected, hung_up, bc, bh, cfg)
    in_alert = 0
    if st.alert_start_s is None:
        if spiking:
            st.alert_start_s, st.clear_streak, in_alert = window_start_s, 0, 1
            out.append(_record("firing", dimension, value, window_start_s, window_start_s, connected, hung_up, bc, bh,
                               cfg, now_ms))
    elif spiking:
        st.clear_streak, in_alert = 0, 1
    else:
        st.clear_streak += 1
        if st.clear_streak >= cfg.resolve_after_windows:
            out.append(_record("resolved", dimension, value, st.alert_start_s, window_start_s, connected, hung_up,
                               bc, bh, cfg, now_ms))
            st.alert_start_s, st.clear_streak = None, 0
        else:
            in_alert = 1
    if connected:  # an empty window adds nothing to any baseline
        st.history.append([window_start_s, connected, hung_up, in_alert])
    keep_from = window_start_s - cfg.baseline_s
    if st.history and st.history[0][0] < keep_from:
        st.history = [w for w in st.history if w[0] >= keep_from]
    st.last_start_s = window_start_s
    return st, out


def is_spiking(connected: int, hung_up: int, baseline_connected: int, baseline_hung_up: int,
               cfg: AlertConfig) -> bool:
    if connected < cfg.min_connected or baseline_connected < cfg.min_baseline_connected or connected == 0:
        return False
    rate = baseline_hung_up / baseline_connected
    return wilson_interval(hung_up, connected, cfg.z)[0] > rate * (1.0 + cfg.min_relative_increase)


def _record(status: str, dimension: str, value: str, alert_start_s: int, window_start_s: int, connected: int,
            hung_up: int, base_c: int, base_h: int, cfg: AlertConfig, now_ms: int) -> HangupAlert:
    size = cfg.window_size_s
    low, high = wilson_interval(hung_up, connected, cfg.z)
    rate = hung_up / connected if connected else 0.0
    base_rate = base_h / base_c if base_c else 0.0
    span = f"in {_duration(size)} from {_local(window_start_s, cfg.timezone)}"
    vs = f"vs {base_rate:.0%} baseline ({base_c:,} connected) over the previous {_duration(cfg.baseline_s)}"
    if status == "firing":
        conf = 2 * NormalDist().cdf(cfg.z) - 1
        explanation = (f"{dimension} {value}: hang-up rate {rate:.0%} ({hung_up}/{connected} connected) {span} {vs}; "
                       f"{conf:.0%} Wilson lower bound {low:.0%}")
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
