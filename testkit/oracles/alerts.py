"""Batch oracle for the spike alerts: window counts from raw events (the rates oracle's cells of
the alert dimensions), then a walk over a dense grid of windows (gaps explicit) with the rule of
streams/core/spikes.py's docstring, recomputed from the plain windows at every step (no hourly
sums, no state): the seasonal baseline is the normal windows whose hour is 1..seasonal_days
days before the current one, else the trailing one is the normal windows of the hours
[hour - baseline_s, hour] that precede the current window; the pair test sums the current
window with the one just before it, when that one had calls.

Independent of streams.core.spikes except for `wilson_interval`, which
tests/streams/core/test_spikes.py checks against published values.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.streams.core.spikes import AlertConfig, wilson_interval
from testkit.oracles.rates import window_counts

ALERT_DIMENSIONS = ("branch", "campaign", "script_version")


def oracle_window_counts(events: Iterable[CallOutcome], size_s: int) -> dict[tuple[str, str, int], tuple[int, int]]:
    """(dimension, value, window_start_s) -> (connected, hung_up) for every window with an event."""
    return {(dim, value, start): (c["connected"], c["hung_up"])
            for (_, start, dim, value), c in window_counts(events, [size_s]).items() if dim in ALERT_DIMENSIONS}


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
        alert = None
        clear = 0
        for s in range(min(wins), max(wins) + size, size):
            c, h = wins.get(s, (0, 0))
            hour = s // 3600 * 3600
            normal = {b: wins[b] for b in wins if b < s and b not in excluded}
            same_hours = {hour - k * 86_400 for k in range(1, cfg.seasonal_days + 1)}
            seasonal = [x for b, x in normal.items() if b // 3600 * 3600 in same_hours]
            margin = cfg.seasonal_relative_increase
            if sum(x[0] for x in seasonal) < cfg.min_seasonal_connected or not cfg.seasonal_days:
                seasonal = [x for b, x in normal.items() if hour - cfg.baseline_s <= b // 3600 * 3600]
                margin = cfg.min_relative_increase
            bc = sum(x[0] for x in seasonal)
            bh = sum(x[1] for x in seasonal)
            rate = bh / bc if bc else 0.0
            spiking = (c >= cfg.min_connected and c > 0 and bc >= cfg.min_baseline_connected
                       and wilson_interval(h, c, cfg.z)[0] > rate * (1 + margin))
            if not spiking and c > 0 and cfg.pair_z > 0 and s - size in wins:
                pc, ph = c + wins[s - size][0], h + wins[s - size][1]
                spiking = (pc >= cfg.min_connected and bc >= cfg.min_baseline_connected
                           and wilson_interval(ph, pc, cfg.pair_z)[0] > rate * (1 + margin))
            if alert is None:
                if spiking:
                    alert = f"{dim}|{value}|{s}"
                    out.append((alert, "firing", s))
                    excluded.add(s)
            elif spiking:
                clear = 0
                excluded.add(s)
            else:
                clear += 1
                if clear >= cfg.resolve_after_windows:
                    out.append((alert, "resolved", s))
                    alert, clear = None, 0
                else:
                    excluded.add(s)
    return out


def oracle_alerts(events: Iterable[CallOutcome], cfg: AlertConfig) -> list[tuple[str, str]]:
    """(alert_id, status) of every alert transition, per series in window order."""
    counts = oracle_window_counts(events, cfg.window_size_s)
    return [(a, s) for a, s, _ in oracle_alerts_from_counts(counts, cfg)]
