"""Batch oracle for the spike alerts: window counts from raw events (the rates oracle's cells of
the alert dimensions), then a walk over a dense grid of windows (gaps explicit) with the rule of
streams/core/spikes.py's docstring, recomputed from the plain windows at every step (no hourly
sums, no state): the seasonal baseline is the normal windows whose hour is 1..seasonal_days
days before the current one, else the trailing one is the normal windows of the hours
[hour - baseline_s, hour] that precede the current window. Every window's baseline is kept
as it was when the window was judged; the scan tries every span of the last k windows ending
with the current one (min_scan_windows <= k <= scan_windows, not reaching back to or before the
window that resolved the last alert), shortest first, and each span's evidence is written out
from its definition: hang-ups minus the sum of connected x baseline rate x (1 + margin) of each
window, over the square root of the binomial variance, the baseline's sampling error (one
common error, its standard deviations summed) and (rate_drift x expected)^2.

Independent of streams.core.spikes (AlertConfig aside); tests/streams/core/test_spikes.py
checks the evidence against the Wilson interval's published values and a plain computation.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.streams.core.spikes import AlertConfig
from testkit.oracles.rates import window_counts

ALERT_DIMENSIONS = ("branch", "campaign", "script_version")


def oracle_window_counts(events: Iterable[CallOutcome], size_s: int) -> dict[tuple[str, str, int], tuple[int, int]]:
    """(dimension, value, window_start_s) -> (connected, hung_up) for every window with an event."""
    return {(dim, value, start): (c["connected"], c["hung_up"])
            for (_, start, dim, value), c in window_counts(events, [size_s]).items() if dim in ALERT_DIMENSIONS}


def _z(windows: list[tuple[int, int, int, int, float]], drift: float) -> float:
    """(sum h - sum c p) / sqrt(sum c p (1 - p) + (sum c sqrt(p (1 - p) / bc))^2 + (drift sum c p)^2),
    p = bh / bc x (1 + margin) per window; -inf when some p >= 1."""
    ps = [bh / bc * (1.0 + m) for _, _, bc, bh, m in windows]
    if any(p >= 1.0 for p in ps):
        return -math.inf
    e = sum(c * p for (c, *_), p in zip(windows, ps, strict=True))
    base_sd = sum(c * math.sqrt(p * (1.0 - p) / bc) for (c, _, bc, _, _), p in zip(windows, ps, strict=True))
    binomial = sum(c * p * (1.0 - p) for (c, *_), p in zip(windows, ps, strict=True))
    var = binomial + base_sd * base_sd + drift * e * (drift * e)
    excess = sum(h for _, h, *_ in windows) - e
    if var <= 0.0:
        return math.inf if excess > 0 else -math.inf
    return excess / math.sqrt(var)


def oracle_alerts_from_counts(counts: dict[tuple[str, str, int], tuple[int, int]],
                              cfg: AlertConfig) -> list[tuple[str, str, int]]:
    """(alert_id, status, window_start_s of the transition), per series in window order."""
    series: dict[tuple[str, str], dict[int, tuple[int, int]]] = defaultdict(dict)
    for (dim, value, start), cell in counts.items():
        series[(dim, value)][start] = cell
    out = []
    size = cfg.window_size_s
    for (dim, value), wins in sorted(series.items()):
        excluded: set[int] = set()
        judged: dict[int, tuple[int, int, float]] = {}  # window start -> its baseline (connected, hung up, margin)
        alert = None
        clear = 0
        forget_to = min(wins) - size  # the scan does not reach back to this window (the last resolving one)
        for s in range(min(wins), max(wins) + size, size):
            c = wins.get(s, (0, 0))[0]
            hour = s // 3600 * 3600
            normal = {b: wins[b] for b in wins if b < s and b not in excluded}
            same_hours = {hour - k * 86_400 for k in range(1, cfg.seasonal_days + 1)}
            seasonal = [x for b, x in normal.items() if b // 3600 * 3600 in same_hours]
            margin = cfg.seasonal_relative_increase
            if sum(x[0] for x in seasonal) < cfg.min_seasonal_connected or not cfg.seasonal_days:
                seasonal = [x for b, x in normal.items() if hour - cfg.baseline_s <= b // 3600 * 3600]
                margin = cfg.min_relative_increase
            judged[s] = (sum(x[0] for x in seasonal), sum(x[1] for x in seasonal), margin)
            spiking = False
            fired_from = s
            for k in range(cfg.min_scan_windows, cfg.scan_windows + 1) if c > 0 else ():
                lo = s - (k - 1) * size
                if lo <= forget_to:
                    break
                if lo not in wins:  # a span starts with a window that arrived
                    continue
                span = [(wins[b][0], wins[b][1], *judged[b]) for b in range(lo, s + size, size) if b in wins]
                if any(bc < cfg.min_baseline_connected for _, _, bc, _, _ in span):
                    break
                if sum(x[0] for x in span) >= cfg.min_connected and _z(span, cfg.rate_drift) > cfg.z:
                    spiking = True
                    fired_from = lo
                    break
            if alert is None:
                if spiking:
                    alert = f"{dim}|{value}|{fired_from}"
                    out.append((alert, "firing", s))
                    excluded.add(s)
            elif spiking:
                clear = 0
                excluded.add(s)
            else:
                clear += 1
                if clear >= cfg.resolve_after_windows:
                    out.append((alert, "resolved", s))
                    alert, clear, forget_to = None, 0, s
                else:
                    excluded.add(s)
    return out


def oracle_alerts(events: Iterable[CallOutcome], cfg: AlertConfig) -> list[tuple[str, str]]:
    """(alert_id, status) of every alert transition, per series in window order."""
    counts = oracle_window_counts(events, cfg.window_size_s)
    return [(a, s) for a, s, _ in oracle_alerts_from_counts(counts, cfg)]
