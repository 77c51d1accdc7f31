"""Spike alerts: Wilson interval references, the alert lifecycle, the seasonal (same hour of
the previous days) and trailing baselines, idempotence, old state bytes, and the oracle."""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.schemas.records import HangupAlert
from hangwatch.streams.core.spikes import AlertConfig, SpikeState, evidence, on_final_window, scan, wilson_interval
from testkit.oracles.alerts import oracle_alerts, oracle_alerts_from_counts, oracle_window_counts

# The lifecycle tests use the plain trailing rule at 95 % (no seasonal baseline, no margin, no drift).


def single(z: float, **kw: Any) -> AlertConfig:
    """One 5-minute window at a time (a scan of one window): the single-window test."""
    return AlertConfig(z=z, window_size_s=300, scan_windows=1, min_scan_windows=1, resolve_after_windows=2, **kw)


CFG = single(1.96, min_relative_increase=0.0, seasonal_days=0, rate_drift=0.0)
W0 = 1_795_392_000  # 2026-11-23T00:00:00Z, aligned to 300 s
NOW = 1_800_000_000_000


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    # Published Wilson score intervals at 95% (z = 1.96), e.g. R prop.test(k, n, correct = FALSE).
    (0, 10, 0.0, 0.2775),
    (1, 10, 0.0179, 0.4042),
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (81, 263, 0.2553, 0.3662),
])
def test_wilson_reference_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(k, n, 1.96)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


def test_wilson_edges() -> None:
    assert wilson_interval(0, 0, 1.96) == (0.0, 1.0)
    assert wilson_interval(0, 1000, 1.96)[0] == 0.0  # exactly zero, not float residue
    assert wilson_interval(1000, 1000, 1.96)[1] == 1.0
    lo90, hi90 = wilson_interval(5, 10, 1.645)
    lo95, hi95 = wilson_interval(5, 10, 1.96)
    assert lo95 < lo90 < 0.5 < hi90 < hi95
    with pytest.raises(ValueError):
        wilson_interval(11, 10, 1.96)


def run(windows: list[tuple[int, int, int]], cfg: AlertConfig = CFG, state: SpikeState | None = None,
        persist: bool = True) -> tuple[SpikeState, list[HangupAlert]]:
    """Feed (window index, connected, hung_up) as final windows of branch br-1."""
    out: list[HangupAlert] = []
    s = state
    for i, c, h in windows:
        if persist and s is not None:
            s = SpikeState.from_bytes(s.to_bytes())
        s, alerts = on_final_window(s, "branch", "br-1", W0 + i * cfg.window_size_s, c, h, cfg, NOW)
        out += alerts
    assert s is not None
    return s, out


NORMAL = [(i, 40, 4) for i in range(12)]  # 10% over 480 connected


def test_spike_fires_once_and_resolves() -> None:
    windows = [*NORMAL, (12, 40, 20), (13, 50, 30), (14, 40, 22), (15, 40, 5), (16, 40, 4), (17, 40, 3)]
    _, alerts = run(windows)
    assert [(a["alert_id"], a["status"], a["version"]) for a in alerts] == [
        (f"branch|br-1|{W0 + 12 * 300}", "firing", 1),
        (f"branch|br-1|{W0 + 12 * 300}", "resolved", 2),
    ]
    fire, res = alerts
    assert (fire["connected"], fire["hung_up"], fire["hangup_rate"]) == (40, 20, 0.5)
    assert fire["baseline_connected"] == 480 and fire["baseline_rate"] == pytest.approx(0.1)
    assert fire["wilson_low"] > 0.1 and fire["window_start"] == "2026-11-23T01:00:00.000Z"
    assert fire["window_end"] == "2026-11-23T01:05:00.000Z" and fire["window_size_s"] == 300
    assert fire["explanation"] == ("branch br-1: hang-up rate 50% (20/40 connected) in 5 min from 2026-11-23 09:00 "
                                   "+0800 vs 10% baseline (480 connected) over the previous 24 h; "
                                   "8.1 standard deviations above it; 95% Wilson lower bound 35%")
    # Hysteresis: the second consecutive normal window (index 16) resolves; spiking windows
    # 12-14 and the first normal one (15) stay out of its baseline.
    assert res["window_start"] == "2026-11-23T01:20:00.000Z" and res["baseline_connected"] == 480
    assert res["explanation"].startswith("branch br-1: hang-up rate back to 10% (4/40 connected) in 5 min from "
                                         "2026-11-23 09:20 +0800 vs 10% baseline")
    assert res["explanation"].endswith("firing since 09:00 (20 min)")


def test_resolve_after_one_window() -> None:
    cfg = dataclasses.replace(CFG, resolve_after_windows=1)
    _, alerts = run([*NORMAL, (12, 40, 20), (13, 40, 4), (14, 40, 20)], cfg)
    assert [(a["alert_id"].rsplit("|", 1)[1], a["status"]) for a in alerts] == [
        (str(W0 + 3600), "firing"), (str(W0 + 3600), "resolved"), (str(W0 + 4200), "firing")]


def test_one_noisy_window_does_not_split_an_incident() -> None:
    _, alerts = run([*NORMAL, (12, 40, 20), (13, 40, 6), (14, 40, 20), (15, 40, 4), (16, 40, 4)])
    assert [a["status"] for a in alerts] == ["firing", "resolved"]


def test_no_spike_no_alert() -> None:
    _, alerts = run([*NORMAL, *((i, 40, 5) for i in range(12, 300))])
    assert alerts == []


def test_too_few_connected_or_too_little_baseline_no_alert() -> None:
    assert run([*NORMAL, (12, 29, 29)])[1] == []  # min_connected = 30
    assert run([(0, 40, 4), (1, 40, 4), (2, 40, 30)])[1] == []  # baseline 80 < 100
    assert [a["status"] for a in run([*NORMAL, (12, 30, 30)])[1]] == ["firing"]


def test_min_relative_increase() -> None:
    windows = [*NORMAL, (12, 100, 25)]  # lower bound ~17.5% vs a 10% baseline
    assert [a["status"] for a in run(windows)[1]] == ["firing"]
    assert run(windows, dataclasses.replace(CFG, min_relative_increase=1.0))[1] == []


def test_replay_is_idempotent() -> None:
    s, _ = run(NORMAL)
    s, first = on_final_window(s, "branch", "br-1", W0 + 12 * 300, 40, 20, CFG, NOW)
    before = s.to_bytes()
    s, again = on_final_window(s, "branch", "br-1", W0 + 12 * 300, 40, 20, CFG, NOW)
    assert [a["status"] for a in first] == ["firing"] and again == []
    assert s.to_bytes() == before and s.hours == [[W0, 480, 48]]  # the firing window stays out
    s, older = on_final_window(s, "branch", "br-1", W0 + 3 * 300, 40, 40, CFG, NOW)
    assert older == [] and s.to_bytes() == before


def test_gap_counts_as_empty_windows() -> None:
    # Firing at 12, then no calls for two windows: resolved at window 14 (the second empty one)
    # when window 15 arrives, and window 15 is judged on its own (here: spiking again).
    _, alerts = run([*NORMAL, (12, 40, 20), (15, 40, 20)])
    assert [(a["status"], a["window_start"]) for a in alerts] == [
        ("firing", "2026-11-23T01:00:00.000Z"), ("resolved", "2026-11-23T01:10:00.000Z"),
        ("firing", "2026-11-23T01:15:00.000Z")]
    assert alerts[1]["connected"] == 0 and alerts[1]["hangup_rate"] == 0.0
    assert "no connected calls" in alerts[1]["explanation"]
    # One empty window plus one normal window also make two.
    _, alerts = run([*NORMAL, (12, 40, 20), (14, 40, 4)])
    assert [(a["status"], a["window_start"]) for a in alerts] == [
        ("firing", "2026-11-23T01:00:00.000Z"), ("resolved", "2026-11-23T01:10:00.000Z")]


def test_alert_windows_stay_out_of_the_baseline() -> None:
    # A long incident at 50% keeps firing: its own windows never become the baseline.
    s, alerts = run([*NORMAL, *((i, 40, 20) for i in range(12, 112))])
    assert [a["status"] for a in alerts] == ["firing"] and s.alert_start_s == W0 + 3600
    assert [h[0] for h in s.hours] == [W0]  # only the normal hour
    # Until the baseline span holds too few normal windows: with a 1 h baseline, the hours
    # [H - 1 h, H] of window 24 (02:00) hold no normal window; it is not spiking and window 25
    # resolves the alert.
    cfg = dataclasses.replace(CFG, baseline_s=3600)
    _, alerts = run([*NORMAL, *((i, 40, 20) for i in range(12, 40))], cfg)
    assert [(a["status"], a["window_start"]) for a in alerts] == [("firing", "2026-11-23T01:00:00.000Z"),
                                                                   ("resolved", "2026-11-23T02:05:00.000Z")]


@pytest.mark.parametrize("cfg", [CFG, AlertConfig()], ids=["trailing", "default"])
def test_state_round_trip_and_bounded_history(cfg: AlertConfig) -> None:
    s, _ = run([*NORMAL, (12, 40, 20), *((i, 40, 4) for i in range(13, 4000))], cfg, persist=False)
    assert SpikeState.from_bytes(s.to_bytes()) == s
    span = max(cfg.seasonal_days * 86_400, cfg.baseline_s)
    assert len(s.hours) <= span // 3600 + 1
    assert s.hours[0][0] >= s.last_start_s - span - 3600  # type: ignore[operator]
    assert len(s.to_bytes()) < 8000


def test_old_state_bytes_are_read() -> None:
    """SpikeState v1 (per-window history with in_alert flags) decodes into hourly sums of the
    normal windows, and the detector carries on from it."""
    old = orjson.dumps({"v": 1, "h": [[W0, 40, 4, 0], [W0 + 300, 40, 5, 0], [W0 + 3600, 40, 30, 1],
                                      [W0 + 3900, 40, 6, 0]], "l": W0 + 3900, "a": W0 + 3600, "c": 1})
    s = SpikeState.from_bytes(old)
    assert s.hours == [[W0, 80, 9], [W0 + 3600, 40, 6]] and s.alert_start_s == W0 + 3600
    assert (s.last_start_s, s.clear_streak) == (W0 + 3900 + 240, 5)  # its 5-minute window, counted in minutes
    s, alerts = on_final_window(s, "branch", "br-1", W0 + 4440, 40, 4, AlertConfig(seasonal_days=0), NOW)
    assert [a["status"] for a in alerts] == ["resolved"]
    with pytest.raises(ValueError):
        SpikeState.from_bytes(orjson.dumps({"v": 99}))


@pytest.mark.parametrize("v", [2, 3])
def test_5_minute_state_bytes_are_read_as_minutes(v: int) -> None:
    """SpikeState v2/v3 were written by the 5-minute detector: the hours are kept, the last
    window is taken as covering its 5 minutes (its minutes are replays), an open alert's clear
    streak is counted in minutes, and the scan starts empty."""
    cfg = AlertConfig(seasonal_days=0, rate_drift=0.0)
    last = W0 + 3600
    p = [60, 14] if v == 2 else [60, 14, 400, 40, 0]
    old = orjson.dumps({"v": v, "b": [[W0, 400, 40], [W0 + 3600, 60, 14]], "l": last, "a": last, "c": 1, "p": p})
    s = SpikeState.from_bytes(old)
    assert (s.hours, s.last_start_s, s.alert_start_s, s.clear_streak, s.recent) == (
        [[W0, 400, 40], [W0 + 3600, 60, 14]], last + 240, last, 5, [])
    assert on_final_window(s, "branch", "br-1", last + 240, 12, 3, cfg, NOW)[1] == []  # a replay
    assert s.hours[-1] == [W0 + 3600, 60, 14]
    s, alerts = on_final_window(s, "branch", "br-1", last + 300 + 4 * 60, 12, 1, cfg, NOW)
    assert [(a["status"], a["alert_id"]) for a in alerts] == [("resolved", f"branch|br-1|{last}")]
    assert SpikeState.from_bytes(s.to_bytes()) == s


DAY = 86_400


def test_seasonal_baseline_knows_the_daily_rhythm() -> None:
    """Lunch hang-ups are 25 % on ordinary days and 10 % in the morning. The trailing baseline
    (mostly mornings) would page every lunch; the same hour of the previous days does not,
    and a real doubling at lunch still fires."""
    cfg = single(1.96, seasonal_days=2, min_seasonal_connected=300, seasonal_relative_increase=0.2,
                      min_relative_increase=0.2, baseline_s=DAY)
    def day(d: int, lunch_hung: int) -> list[tuple[int, int, int]]:
        morning = [(d * 288 + 9 * 12 + j, 100, 10) for j in range(24)]  # 09:00-11:00 UTC, 10 %
        lunch = [(d * 288 + 11 * 12 + j, 100, lunch_hung) for j in range(12)]  # 11:00-12:00 UTC
        return morning + lunch
    _, alerts = run(day(0, 25), cfg)
    assert [a["status"] for a in alerts][:1] == ["firing"]  # day 1: trailing baseline, lunch looks like a spike
    first = alerts[0]
    assert "over the previous 24 h" in first["explanation"]
    s, alerts = run([*day(0, 25)], dataclasses.replace(cfg, min_relative_increase=2.0))
    assert alerts == []  # (with a wide trailing margin, day 1 stays quiet)
    s, alerts = run(day(1, 25), dataclasses.replace(cfg, min_relative_increase=2.0), state=s)
    s, alerts2 = run(day(2, 25), cfg, state=s)
    assert alerts == [] and alerts2 == []  # seasonal: lunch is normal at lunch
    s, alerts = run([(3 * 288 + 11 * 12, 100, 50)], cfg, state=s)
    assert [a["status"] for a in alerts] == ["firing"]
    assert alerts[0]["baseline_connected"] == 2400 and alerts[0]["baseline_rate"] == pytest.approx(0.25)
    assert "at the same hour of the previous 2 days" in alerts[0]["explanation"]
    assert "Wilson lower bound" in alerts[0]["explanation"]


def test_seasonal_needs_enough_calls_else_trailing() -> None:
    cfg = single(1.96, seasonal_days=1, min_seasonal_connected=1000, min_relative_increase=0.0,
                      seasonal_relative_increase=0.0)
    # 12 windows at 10:00 on day 0 (480 connected < 1000), then day 1 at 10:00: trailing baseline.
    s, _ = run([(10 * 12 + j, 40, 4) for j in range(12)], cfg)
    _, alerts = run([(288 + 10 * 12, 40, 20)], cfg, state=s)
    assert alerts and "over the previous 24 h" in alerts[0]["explanation"]


def test_scan_sees_a_spike_split_across_windows() -> None:
    """Neither window alone passes at z = 3.5, the two summed do: the span of two windows fires,
    and the record's window is that span."""
    cfg = AlertConfig(z=3.5, seasonal_days=0, min_relative_increase=0.0, window_size_s=300, scan_windows=2,
                      min_scan_windows=1)
    windows = [*((i, 200, 20) for i in range(12)), (12, 60, 14), (13, 60, 14)]
    assert run(windows, dataclasses.replace(cfg, scan_windows=1))[1] == []
    _, alerts = run(windows, cfg)
    assert [(a["status"], a["window_start"], a["window_end"], a["window_size_s"]) for a in alerts] == [
        ("firing", "2026-11-23T01:00:00.000Z", "2026-11-23T01:10:00.000Z", 600)]
    assert (alerts[0]["connected"], alerts[0]["hung_up"]) == (120, 28)  # the span's counts
    assert alerts[0]["alert_id"] == f"branch|br-1|{W0 + 12 * 300}"
    assert "in 10 min from" in alerts[0]["explanation"]
    assert run([*windows[:12], (12, 60, 14), (14, 60, 14)], cfg)[1] == []  # a gap between: no span holds both
    # shortest spans: one window (after a gap) is not enough when min_scan_windows is 2
    strong = [*windows[:12], (13, 60, 40)]
    assert [a["status"] for a in run(strong, cfg)[1]] == ["firing"]
    assert run(strong, dataclasses.replace(cfg, min_scan_windows=2))[1] == []


def test_scan_equals_evidence_of_each_span() -> None:
    """scan() is the evidence() of the shortest passing span (a plain recomputation), else the
    highest of all spans; spans stop at a window without enough baseline."""
    rng = random.Random(5)
    cfg = AlertConfig(z=2.0, scan_windows=6, min_scan_windows=2, min_connected=20, rate_drift=0.03)
    for _ in range(300):
        n = rng.randint(1, 6)
        starts = sorted(rng.sample(range(6), n))
        recent = []
        for k in starts:
            c = rng.randint(0, 40)
            bc = rng.choice([50, 500, 5000])
            recent.append([W0 + k * 60, c, rng.randint(0, c), bc, int(bc * rng.uniform(0.05, 0.3)), rng.randint(0, 1)])
        last = recent[-1][0]
        spans = []
        for i in range(len(recent) - 1, -1, -1):
            if recent[i][3] < cfg.min_baseline_connected:
                break
            span = recent[i:]
            if (last - span[0][0]) // 60 + 1 < cfg.min_scan_windows or sum(w[1] for w in span) < cfg.min_connected:
                continue
            ws = [(w[1], w[2], w[3], w[4], cfg.min_relative_increase if w[5] == 0 else 0.0) for w in span]
            spans.append((_plain_z(ws, cfg.rate_drift), span[0][0]))
        z, start = scan(recent, cfg)
        passing = [x for x in spans if x[0] > cfg.z]
        want = passing[0] if passing else max(spans, default=(-math.inf, last))
        assert z == pytest.approx(want[0], rel=1e-9, abs=1e-12) and start == want[1] if spans else z == -math.inf


def _plain_z(windows: list[tuple[int, int, int, int, float]], drift: float) -> float:
    """The evidence written as a normal approximation of H - E: each window's hang-ups
    binomial around c p, the baseline rate estimated from bc calls (one error, shared), the
    rate wandering by drift relative: Var = sum c p (1-p) + (sum c sd(p_hat))^2 + (drift E)^2."""
    ps = [bh / bc * (1 + m) for _, _, bc, bh, m in windows]
    e = sum(w[0] * p for w, p in zip(windows, ps, strict=True))
    var = sum(w[0] * p * (1 - p) for w, p in zip(windows, ps, strict=True))
    var += sum(w[0] * (p * (1 - p) / w[2]) ** 0.5 for w, p in zip(windows, ps, strict=True)) ** 2
    var += (drift * e) ** 2
    return (sum(w[1] for w in windows) - e) / var ** 0.5


def test_evidence_reference_values() -> None:
    # 100 calls, 30 hung up, baseline 150/1000, drift 0.05: E = 15, Var = 12.75 + 1.275 + 0.5625
    assert evidence([(100, 30, 1000, 150, 0.0)], 0.05) == pytest.approx(15 / 14.5875 ** 0.5, rel=1e-12)
    # a margin raises the expected rate: p = 0.15 x 1.2 = 0.18
    assert evidence([(100, 30, 1000, 150, 0.2)], 0.0) == pytest.approx(
        12 / (100 * 0.18 * 0.82 + 100 ** 2 * 0.18 * 0.82 / 1000) ** 0.5, rel=1e-12)
    # two windows with different baselines (13:55 at lunch, 14:00 in the afternoon)
    pair = [(100, 20, 2000, 400, 0.0), (100, 12, 3000, 300, 0.0)]
    assert evidence(pair, 0.03) == pytest.approx(_plain_z(pair, 0.03), rel=1e-12)
    assert evidence([(50, 3, 500, 0, 0.0)], 0.03) == float("inf")  # a baseline without hang-ups
    assert evidence([(50, 0, 500, 0, 0.0)], 0.03) == float("-inf")
    assert evidence([(50, 50, 500, 400, 0.5)], 0.0) == float("-inf")  # expected rate 120 %: no excess possible


@settings(max_examples=300, deadline=None)
@given(c=st.integers(1, 3000), frac=st.floats(0, 1), bc=st.integers(1, 10**6), bfrac=st.floats(0.001, 0.9),
       margin=st.sampled_from([0.0, 0.1, 0.5]), drift=st.sampled_from([0.0, 0.03, 0.1]), pair=st.booleans())
def test_property_evidence_equals_the_plain_formula(c: int, frac: float, bc: int, bfrac: float, margin: float,
                                                    drift: float, pair: bool) -> None:
    h, bh = round(c * frac), max(1, round(bc * bfrac))
    windows = [(c, h, bc, bh, margin)] + ([(c // 2 + 1, h // 3, bc * 2, bh, 0.0)] if pair else [])
    if any(w[3] / w[2] * (1 + w[4]) >= 1 for w in windows):
        assert evidence(windows, drift) == float("-inf")
    else:
        assert evidence(windows, drift) == pytest.approx(_plain_z(windows, drift), rel=1e-9, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(c=st.integers(1, 2000), frac=st.floats(0, 1), rate=st.floats(0.01, 0.6), z=st.sampled_from([1.96, 3.5, 4.0]))
def test_property_one_window_without_drift_is_the_wilson_test(c: int, frac: float, rate: float, z: float) -> None:
    """With a baseline of very many calls (its error vanishes) and no drift, evidence > z is
    'the Wilson lower bound at z is above the baseline rate' (the score test behind Wilson)."""
    h = round(c * frac)
    bc = 10**15
    bh = round(bc * rate)
    ev = evidence([(c, h, bc, bh, 0.0)], 0.0)
    low = wilson_interval(h, c, z)[0]
    if abs(ev - z) > 1e-6:  # not on the boundary itself
        assert (ev > z) == (low > bh / bc)


def test_span_uses_each_windows_own_baseline() -> None:
    """13:xx hangs up at 20 %, 14:xx at 10 % on ordinary days. An ordinary 13:55 followed by a
    slightly high 14:00 is no spike; summed against 14:00's rate alone it would look like one."""
    cfg = AlertConfig(z=2.5, seasonal_days=2, min_seasonal_connected=300, seasonal_relative_increase=0.0,
                      min_relative_increase=0.5, rate_drift=0.0, window_size_s=300, scan_windows=2,
                      min_scan_windows=2)
    def day(d: int) -> list[tuple[int, int, int]]:
        return ([(d * 288 + 13 * 12 + j, 100, 20) for j in range(12)]
                + [(d * 288 + 14 * 12 + j, 100, 10) for j in range(12)])
    s, alerts = run(day(0) + day(1), dataclasses.replace(cfg, min_relative_increase=2.0))
    assert alerts == []
    edge = [(2 * 288 + 13 * 12 + 11, 100, 20), (2 * 288 + 14 * 12, 100, 16)]
    assert run(edge, cfg, state=SpikeState.from_bytes(s.to_bytes()))[1] == []
    # the same 14:00 window after an elevated 13:55 (30 %) is a spike across the boundary
    _, alerts = run([(2 * 288 + 13 * 12 + 11, 100, 30), (2 * 288 + 14 * 12, 100, 16)], cfg,
                    state=SpikeState.from_bytes(s.to_bytes()))
    assert [(a["status"], a["window_start"]) for a in alerts] == [("firing", "2026-11-25T13:55:00.000Z")]
    assert "in 10 min from" in alerts[0]["explanation"]
    assert "at the same hour of the previous 2 days" in alerts[0]["explanation"]


def test_rate_drift_asks_busy_series_for_a_relative_excess() -> None:
    """11.5 % against a 10 % baseline is 3.4 standard deviations of a binomial at 5,000 calls,
    not a spike worth a page; the drift term keeps it quiet. A 2.2x window at 150 calls barely
    notices the term."""
    base = [(i, 5000, 500) for i in range(12)]
    quiet = single(3.0, seasonal_days=0, min_relative_increase=0.0, rate_drift=0.0)
    assert [a["status"] for a in run([*base, (12, 5000, 575)], quiet)[1]] == ["firing"]
    assert run([*base, (12, 5000, 575)], dataclasses.replace(quiet, rate_drift=0.03))[1] == []
    small = [(i, 150, 15) for i in range(12)]
    z0 = evidence([(150, 33, 1800, 180, 0.0)], 0.0)
    z3 = evidence([(150, 33, 1800, 180, 0.0)], 0.03)
    assert z0 > z3 > 0.99 * z0 and z3 > 4.0
    assert [a["status"] for a in run([*small, (12, 150, 33)], dataclasses.replace(quiet, rate_drift=0.03))[1]] == [
        "firing"]


def test_default_config_equals_the_settings() -> None:
    from hangwatch.platform.settings import AlertSettings
    a, c = AlertSettings(), AlertConfig()
    assert {f: getattr(c, f) for f in AlertSettings.model_fields} == a.model_dump()


def test_firing_explanation_at_the_default_z() -> None:
    _, alerts = run([*NORMAL, (12, 100, 60)], AlertConfig())
    # the span of the last two minutes (min_scan_windows 2): 64/140 against 10 %
    assert "hang-up rate 46% (64/140 connected) in 2 min from 2026-11-23 08:11 +0800" in alerts[0]["explanation"]
    assert "99.9996% Wilson lower bound" in alerts[0]["explanation"]
    assert "8.9 standard deviations above it;" in alerts[0]["explanation"]


def test_bad_counts_are_rejected() -> None:
    with pytest.raises(ValueError):
        on_final_window(None, "branch", "br-1", W0, 10, 11, CFG, NOW)


# --- property: stream == oracle -------------------------------------------------------------

SMALL = AlertConfig(window_size_s=60, baseline_s=600, min_connected=5, min_baseline_connected=10, z=1.96,
                    min_relative_increase=0.0, seasonal_days=0, scan_windows=1, min_scan_windows=1, rate_drift=0.0,
                    resolve_after_windows=2)


def feed_counts(counts: dict[tuple[str, str, int], tuple[int, int]], cfg: AlertConfig,
                rng: random.Random) -> list[tuple[str, str, int]]:
    """Per series, windows in start order, with random replays and state round trips."""
    series: dict[tuple[str, str], list[tuple[int, tuple[int, int]]]] = {}
    for (dim, value, start), cell in counts.items():
        series.setdefault((dim, value), []).append((start, cell))
    out: list[tuple[str, str, int]] = []
    for (dim, value), wins in sorted(series.items()):
        wins.sort()
        s: SpikeState | None = None
        for k, (start, (c, h)) in enumerate(wins):
            if s is not None and rng.random() < 0.3:
                s = SpikeState.from_bytes(s.to_bytes())
            s, alerts = on_final_window(s, dim, value, start, c, h, cfg, NOW)
            out += [(a["alert_id"], a["status"], _end(a) - cfg.window_size_s) for a in alerts]
            if rng.random() < 0.2:  # replay an earlier or the same window
                j = rng.randint(0, k)
                s, again = on_final_window(s, dim, value, wins[j][0], *wins[j][1], cfg, NOW)
                assert again == []
    return out


def _end(a: HangupAlert) -> int:
    """The end of the record's window: of the window that fired (its span ends with it) or resolved."""
    from datetime import datetime
    return int(datetime.fromisoformat(a["window_end"]).timestamp())


@st.composite
def window_series(draw: st.DrawFn) -> dict[tuple[str, str, int], tuple[int, int]]:
    counts = {}
    for value in ("br-1", "br-2"):
        start = W0
        for _ in range(draw(st.integers(1, 60))):
            start += 60 * draw(st.sampled_from([1, 1, 1, 1, 2, 3, 12]))
            c = draw(st.integers(0, 12))
            rate = draw(st.sampled_from([0.05, 0.1, 0.2, 0.7, 1.0]))
            h = min(c, round(c * rate + draw(st.integers(-1, 1))))
            counts[("branch", value, start)] = (c, max(0, h))
    return counts


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(counts=window_series(), seed=st.integers(0, 2**32), resolve_after=st.integers(1, 3),
       inc=st.sampled_from([0.0, 0.5]), scan=st.sampled_from([(1, 1), (1, 3), (2, 4), (4, 4)]),
       drift=st.sampled_from([0.0, 0.05]))
def test_property_stream_equals_oracle(counts: dict, seed: int, resolve_after: int, inc: float,
                                       scan: tuple[int, int], drift: float) -> None:
    cfg = dataclasses.replace(SMALL, resolve_after_windows=resolve_after, min_relative_increase=inc,
                              min_scan_windows=scan[0], scan_windows=scan[1], rate_drift=drift)
    got = feed_counts(counts, cfg, random.Random(seed))
    assert got == oracle_alerts_from_counts(counts, cfg)


@st.composite
def day_series(draw: st.DrawFn) -> dict[tuple[str, str, int], tuple[int, int]]:
    """5-minute windows at two hours of four days: the seasonal baseline comes into play."""
    counts = {}
    for value in ("br-1", "br-2"):
        starts = draw(st.sets(st.tuples(st.integers(0, 3), st.sampled_from([9, 10]), st.integers(0, 11)),
                              min_size=1, max_size=50))
        for d, hour, j in starts:
            c = draw(st.integers(0, 30))
            rate = draw(st.sampled_from([0.1, 0.1, 0.2, 0.5, 0.9]))
            counts[("branch", value, W0 + d * 86_400 + hour * 3600 + j * 300)] = (c, min(c, round(c * rate)))
    return counts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(counts=day_series(), seed=st.integers(0, 2**32), days=st.integers(0, 3), min_seasonal=st.sampled_from([20, 100]),
       margins=st.sampled_from([(0.0, 0.0), (0.5, 0.2)]), baseline_h=st.sampled_from([1, 24]),
       drift=st.sampled_from([0.0, 0.03]))
def test_property_seasonal_stream_equals_oracle(counts: dict, seed: int, days: int, min_seasonal: int,
                                                margins: tuple[float, float], baseline_h: int, drift: float) -> None:
    cfg = AlertConfig(min_connected=5, min_baseline_connected=10, z=1.96, seasonal_days=days, window_size_s=300,
                      scan_windows=2, min_scan_windows=1, resolve_after_windows=2,
                      min_seasonal_connected=min_seasonal, min_relative_increase=margins[0],
                      seasonal_relative_increase=margins[1], baseline_s=baseline_h * 3600, rate_drift=drift)
    got = feed_counts(counts, cfg, random.Random(seed))
    assert got == oracle_alerts_from_counts(counts, cfg)


def ev(i: int, t_ms: int, outcome: str, branch: str, script: str | None) -> CallOutcome:
    return CallOutcome(
        event_id=f"e{i}", call_id=f"c{i}", borrower_id=f"b{i % 13}", loan_id="l1", occurred_at_ms=t_ms,
        campaign="repayment_reminder", channel="robot", agent_id=None, branch=branch, outcome=outcome,
        hangup_stage="greeting" if outcome == "hung_up" else None, duration_s=2.0, attempt_no=1,
        pre_notified=False, credit_grade=None, first_time_borrower=None, script_version=script,
    )


def test_oracle_window_counts() -> None:
    evs = [ev(1, W0 * 1000 + 1, "hung_up", "br-1", "v1"), ev(2, W0 * 1000 + 59_999, "completed", "br-1", None),
           ev(3, W0 * 1000 + 60_000, "declined", "br-2", "v1"), ev(1, W0 * 1000 + 1, "hung_up", "br-1", "v1")]
    counts = oracle_window_counts(evs, 60)
    assert counts[("branch", "br-1", W0)] == (2, 1)
    assert counts[("script_version", "(none)", W0)] == (1, 0)
    assert counts[("script_version", "v1", W0)] == (1, 1)
    assert counts[("branch", "br-2", W0 + 60)] == (0, 0)
    assert counts[("campaign", "repayment_reminder", W0)] == (2, 1)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32))
def test_property_events_to_alerts(seed: int) -> None:
    """From raw events (with duplicates): window counts -> on_final_window equals oracle_alerts."""
    rng = random.Random(seed)
    evs = []
    for i in range(rng.randint(50, 400)):
        minute = rng.randint(0, 40)
        spike = 20 <= minute < 24 and rng.random() < 0.7
        outcome = "hung_up" if spike or rng.random() < 0.1 else rng.choice(["completed", "completed", "no_answer"])
        evs.append(ev(i, (W0 + minute * 60) * 1000 + rng.randrange(60_000), outcome, rng.choice(["br-1", "br-2"]),
                      rng.choice(["v1", "v2", None])))
    evs += rng.sample(evs, len(evs) // 10)
    rng.shuffle(evs)
    got = feed_counts(oracle_window_counts(evs, 60), SMALL, rng)
    assert [(a, s) for a, s, _ in got] == oracle_alerts(evs, SMALL)
