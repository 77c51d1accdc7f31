"""The alert-quality benchmark's scoring (bench/alert_quality.py): matching alerts to spikes,
time to detect, false and collateral alerts, pooling seeds, and the late-or-missed list, on a
hand-made case whose answers are counted here by hand."""

from __future__ import annotations

from bench.alert_quality import Alert, late_or_missed, pool, score
from hangwatch.simulator import SegmentSpike
from hangwatch.streams.core.spikes import AlertConfig

CFG = AlertConfig(window_size_s=300)  # the hand-made alerts are 5-minute windows
T0 = 1_795_392_000  # aligned to 300 s
SPIKES = [
    SegmentSpike("branch", "b1", (T0 + 60) * 1000, 15.0, 2.0),  # starts 1 min into window 0
    SegmentSpike("branch", "b2", (T0 + 240) * 1000, 20.0, 2.0),  # 4 min into window 0
    SegmentSpike("campaign", "c1", T0 * 1000, 30.0, 3.0),
    SegmentSpike("branch", "b3", T0 * 1000, 10.0, 1.5),
]
ALERTS = [
    Alert("branch", "b1", T0 + 300),  # window 1 ends at +600: 540 s after the start, in time
    Alert("branch", "b2", T0 + 600),  # window 2 ends at +900: 660 s, late
    Alert("script_version", "v1", T0 + 300),  # overlaps spikes of other dimensions: collateral
    Alert("branch", "b1", T0 + 7200),  # overlaps nothing: false
]


def test_score_by_hand() -> None:
    r = score(ALERTS, SPIKES, CFG, T0, 1.0, 10, 600)
    assert (r["alerts"], r["true"], r["false"], r["collateral"]) == (4, 2, 1, 1)
    assert r["precision"] == 2 / 3 and r["false_per_day_per_100_series"] == 10.0
    assert r["detect_by_spike"] == {0: 540, 1: 660}
    g = r["groups"]["2x >= 15 min"]
    assert (g["spikes"], g["detected"], g["in_time"], g["within_target"]) == (2, 2, 1, 0.5)
    assert g["by_dimension"] == {"branch": [2, 2], "campaign": [0, 0], "script_version": [0, 0]}
    assert r["groups"]["3x"]["recall"] == 0.0 and r["groups"]["1.5x"]["detected"] == 0


def test_pool_sums_counts_and_joins_times() -> None:
    one = score(ALERTS, SPIKES, CFG, T0, 1.0, 10, 600)
    two = score(ALERTS[:1], SPIKES, CFG, T0, 2.0, 10, 600)
    p = pool([one, two], 600)
    assert (p["alerts"], p["true"], p["false"], p["collateral"]) == (5, 3, 1, 1)
    assert p["series_days"] == 30.0 and p["false_per_day_per_100_series"] == 100 / 30
    g = p["groups"]["2x >= 15 min"]
    assert (g["spikes"], g["detected"], g["in_time"]) == (4, 3, 2)
    assert g["times"] == [540, 660, 540, None]


def test_late_or_missed_lists_the_windows_the_deadline_allows() -> None:
    cells = {("branch", "b1"): {T0 - 300: (100, 10), T0: (100, 25)},
             ("branch", "b2"): {T0: (90, 20), T0 + 300: (95, 30)}}
    r = score(ALERTS, SPIKES, CFG, T0, 1.0, 10, 600)
    late = late_or_missed(SPIKES, cells, r["detect_by_spike"], 300, 600)
    assert late == [{"series": "branch=b2", "start_offset_s": 240, "minutes": 20.0, "detect_s": 660,
                     "windows": [[0, 0], [90, 20], [95, 30]]}]
