"""Alert quality of the spike detector: `python -m bench.alert_quality` (`make bench-alerts`).

The simulator's calls (daily rhythm of call volume, the model's hour-of-day, campaign, script
and credit-grade effects) are counted into window cells of the detector's size (60 s) of branch, campaign and
script version exactly as the stream counts them (hangwatch.streams.core.windows: window_start_s,
dimension_values, increments), and every series' final windows are replayed in order through
the real detector (hangwatch.streams.core.spikes.on_final_window, with the configuration the
worker builds from the default settings, hangwatch.streams.merge_stage.alert_config), its state
round-tripped through bytes as the changelog does. Two scenarios, same traffic:

- steady: no spike, `--days` days; every alert is a false alert;
- spikes: the same traffic with segment spikes (SimConfig.spikes) of 1.5x, 2x and 3x lasting
  10 to 60 minutes on branches, campaigns and scripts, after a warm-up day without spikes.
  Every 2 hours of the calling day (08:15, 10:15, ... plus a random 0-15 min) one dimension
  (in turn) gets spikes on some of its values at once (values of one dimension share no calls).

Matching: an alert matches a spike when it is on the same series and the window of its firing
record (the span of minutes that fired) overlaps the spike. An unmatched alert whose window
overlaps a spike of ANOTHER dimension is collateral (a 3x spike on one branch really raises its
campaigns' rates) and counted apart; every other unmatched alert is false. Time to detect = end
of the firing record's window - spike start; the alert is emitted when that window is final,
`worker.grace_s` later. Days before
`--warmup-days` are left out of both scenarios' counts (the detector's baselines fill up).

Seeds (`--seeds`, default 11 12): each seed is its own simulated world (population, traffic,
spike times); the figures are pooled over them (92 spikes of which 46 are 2x >= 15 min per
two seeds, 448 steady series-days), so one lucky or unlucky spike moves the 2x figure by ~1
point rather than ~2. Every 2x spike of >= 15 min that is missed or detected late is listed
(series, offset of its start in its 5-minute window, length, the counts of the 5-minute windows
before, at and after its start, and of the minutes the deadline allows): the analysis of what
the detector cannot see in time. Traffic figures are per 5 minutes (the 60 s cells summed).

`--e2e`: also one short scenario (6 h of calls with a 3x and a 2x spike, ~90,000 events)
through the real worker and sink, against the Kafka broker and ClickHouse server of
HANGWATCH_BENCH_KAFKA / HANGWATCH_BENCH_CLICKHOUSE_URL (bench/env.py; own topics and
database, removed afterwards): every alert record the worker wrote to its topic and the sink
to `hangup_alerts` must equal the record of the detector replayed here on the same events'
window cells (every field but emitted_at). A mismatch makes the command exit 1.

Output: a table on the terminal and bench/results/alert-quality-<stamp>.json (+
alert-quality-latest.json). Window cells are cached under .local/bench/alert-quality/ (keyed by
the scenario), so a rerun that changes only the detector takes seconds (the first run of a
seed counts its cells: ~3.5 min per seed on the 2-core machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hangwatch.platform.settings import Settings
from hangwatch.schemas.records import ALERT_DIMENSIONS, HangupAlert
from hangwatch.simulator import SegmentSpike, SimConfig, generate_events
from hangwatch.simulator.config import CAMPAIGN_NAMES, SCRIPT_VERSIONS
from hangwatch.streams.core.spikes import AlertConfig, SpikeState, on_final_window
from hangwatch.streams.core.windows import COUNT_FIELDS, dimension_values, increments, window_start_s
from hangwatch.streams.merge_stage import alert_config

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".local" / "bench" / "alert-quality"
DAY_MS = 86_400_000
# 2026-11-23 00:00 Asia/Shanghai: runs start at a local midnight.
START_MS = 1_795_363_200_000
CONNECTED = COUNT_FIELDS.index("connected")
HUNG_UP = COUNT_FIELDS.index("hung_up")
FACTORS = (2.0, 1.5, 2.0, 3.0)  # cycled: 2x spikes get half the slots (the target is about them)
MINUTES = (15.0, 30.0, 10.0, 60.0, 20.0)
MIN_TRAFFIC = 150  # connected calls per 5 min (series mean over the calling day): the stated traffic of the target
TARGET_GROUP = "2x >= 15 min"

Cells = dict[tuple[str, str], dict[int, tuple[int, int]]]  # (dim, value) -> start -> (connected, hung_up)


def spike_plan(days: int, warmup_days: int, branches: tuple[str, ...], seed: int) -> list[SegmentSpike]:
    rng = random.Random(f"alert-quality/{seed}/spikes")
    values = {"branch": branches, "campaign": CAMPAIGN_NAMES, "script_version": SCRIPT_VERSIONS}
    per_slot = {"branch": 4, "campaign": 1, "script_version": 2}
    out: list[SegmentSpike] = []
    k = slot = 0
    for day in range(warmup_days, days):
        for hour in (8, 10, 12, 14, 16, 18, 20):
            dim = ALERT_DIMENSIONS[slot % 3]
            slot += 1
            vals = values[dim]
            first = (slot // 3) % len(vals)
            chosen = [vals[(first + j * max(1, len(vals) // per_slot[dim])) % len(vals)] for j in range(per_slot[dim])]
            for v in dict.fromkeys(chosen):
                at = START_MS + day * DAY_MS + (hour * 60 + 15) * 60_000 + rng.randrange(15 * 60_000)
                out.append(SegmentSpike(dim, v, at, MINUTES[k % len(MINUTES)],  # type: ignore[arg-type]
                                        FACTORS[k % len(FACTORS)]))
                k += 1
    return out


def count_cells(cfg: SimConfig, size_s: int) -> Cells:
    """Final window cells of the alert dimensions, counted as the stream counts them."""
    dims = set(ALERT_DIMENSIONS)
    cells: dict[tuple[str, str], dict[int, list[int]]] = defaultdict(dict)
    for ev, _, _ in generate_events(cfg):
        start = window_start_s(ev.occurred_at_ms, size_s)
        inc = increments(ev.outcome)
        for dim, value in dimension_values(ev):
            if dim in dims:
                series = cells[(dim, value)]
                c = series.get(start)
                if c is None:
                    c = series[start] = [0] * len(COUNT_FIELDS)
                for i in inc:
                    c[i] += 1
    return {k: {s: (c[CONNECTED], c[HUNG_UP]) for s, c in v.items()} for k, v in cells.items()}


def cached_cells(cfg: SimConfig, size_s: int, console: Console) -> tuple[Cells, float]:
    key = hashlib.sha256(repr((cfg, size_s, 1)).encode()).hexdigest()[:16]
    path = CACHE / f"cells-{key}.json"
    if path.exists():
        raw = json.loads(path.read_text())
        return {(d, v): {int(s): (c[0], c[1]) for s, c in w.items()} for d, v, w in raw}, 0.0
    t0 = time.perf_counter()
    cells = count_cells(cfg, size_s)
    took = time.perf_counter() - t0
    console.print(f"  counted {sum(len(w) for w in cells.values()):,} cells in {took:.0f} s")
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([[d, v, w] for (d, v), w in cells.items()]))
    return cells, took


@dataclasses.dataclass
class Alert:
    dim: str
    value: str
    start_s: int  # start of the firing record's window
    end_s: int | None = None  # its end; None: start_s + the detector's window size


def replay_records(cells: Cells, cfg: AlertConfig) -> list[HangupAlert]:
    """Every series' windows in start order through on_final_window; every alert record."""
    out: list[HangupAlert] = []
    for (dim, value), wins in sorted(cells.items()):
        state: SpikeState | None = None
        for i, start in enumerate(sorted(wins)):
            if state is not None and i % 12 == 0:
                state = SpikeState.from_bytes(state.to_bytes())  # as a restart from the changelog would
            c, h = wins[start]
            state, alerts = on_final_window(state, dim, value, start, c, h, cfg, 0)
            out += alerts
    return out


def replay(cells: Cells, cfg: AlertConfig) -> list[Alert]:
    """The firing alerts of replay_records."""
    out = []
    for a in replay_records(cells, cfg):
        if a["status"] == "firing":
            start = int(a["alert_id"].rsplit("|", 1)[1])  # = the record's window start
            out.append(Alert(a["dimension"], a["value"], start, start + a["window_size_s"]))
    return out


def coarsen(cells: Cells, size_s: int) -> Cells:
    """The same cells summed into windows of size_s (a multiple of theirs)."""
    out: Cells = {}
    for key, wins in cells.items():
        acc: dict[int, tuple[int, int]] = {}
        for s, (c, h) in wins.items():
            w = s - s % size_s
            c0, h0 = acc.get(w, (0, 0))
            acc[w] = (c0 + c, h0 + h)
        out[key] = acc
    return out


def _pct(xs: list[int], q: float) -> int | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def score(alerts: list[Alert], spikes: list[SegmentSpike], cfg: AlertConfig, from_s: int, days: float,
          n_series: int, target_s: int, busy: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    size = cfg.window_size_s
    alerts = [a for a in alerts if a.start_s >= from_s]
    matched: set[int] = set()
    detect: dict[int, int] = {}  # spike index -> seconds from its start to the end of the first matching window
    collateral = false = 0
    for a in alerts:
        hit = False
        end = a.end_s if a.end_s is not None else a.start_s + size
        for i, sp in enumerate(spikes):
            overlaps = a.start_s * 1000 < sp.end_ms and end * 1000 > sp.at_ms
            if overlaps and sp.dimension == a.dim and sp.value == a.value:
                hit = True
                matched.add(id(a))
                t = end - sp.at_ms // 1000
                detect[i] = min(detect.get(i, t), t)
        if not hit:
            if any(a.start_s * 1000 < sp.end_ms and end * 1000 > sp.at_ms and sp.dimension != a.dim
                   for sp in spikes):
                collateral += 1
            else:
                false += 1
    groups: dict[str, dict[str, Any]] = {}
    for label, pick in (("1.5x", lambda s: s.factor == 1.5), ("2x", lambda s: s.factor == 2.0),
                        (TARGET_GROUP, lambda s: s.factor == 2.0 and s.minutes >= 15),
                        (f"2x >= 15 min, >= {MIN_TRAFFIC}/5 min",
                         lambda s: s.factor == 2.0 and s.minutes >= 15 and (s.dimension, s.value) in (busy or set())),
                        ("3x", lambda s: s.factor == 3.0)):
        idx = [i for i, s in enumerate(spikes) if pick(s)]
        groups[label] = _group([detect.get(i) for i in idx], [spikes[i].dimension for i in idx], target_s)
    true_alerts = len(matched)
    return _totals(len(alerts), true_alerts, false, collateral, days, n_series, groups, detect)


def _group(times: list[int | None], dims: list[str], target_s: int) -> dict[str, Any]:
    """A group of spikes: time to detect of each (None: missed) and its dimension."""
    found = [t for t in times if t is not None]
    n = len(times)
    return {
        "spikes": n, "detected": len(found), "in_time": sum(1 for t in found if t <= target_s),
        "recall": len(found) / n if n else None,
        "within_target": sum(1 for t in found if t <= target_s) / n if n else None,
        "detect_s_median": statistics.median(found) if found else None, "detect_s_p90": _pct(found, 0.9),
        "by_dimension": {d: [sum(1 for t, x in zip(times, dims, strict=True) if x == d and t is not None),
                             sum(1 for x in dims if x == d)] for d in ALERT_DIMENSIONS},
        "times": times, "dims": dims,
    }


def _totals(alerts: int, true_alerts: int, false: int, collateral: int, days: float, n_series: int,
            groups: dict[str, dict[str, Any]], detect: dict[int, int] | None = None) -> dict[str, Any]:
    return {
        "alerts": alerts, "true": true_alerts, "false": false, "collateral": collateral,
        "precision": true_alerts / (true_alerts + false) if true_alerts + false else None,
        "series_days": days * n_series,
        "false_per_day_per_100_series": 100 * false / (days * n_series),
        "groups": groups, "detect_by_spike": detect or {},
    }


def pool(runs: list[dict[str, Any]], target_s: int) -> dict[str, Any]:
    """The scores of several seeds as one: counts summed, times to detect joined."""
    groups = {label: _group([t for r in runs for t in r["groups"][label]["times"]],
                            [d for r in runs for d in r["groups"][label]["dims"]], target_s)
              for label in runs[0]["groups"]}
    series_days = sum(r["series_days"] for r in runs)
    alerts, true_alerts, false, collateral = (sum(r[k] for r in runs)
                                              for k in ("alerts", "true", "false", "collateral"))
    return _totals(alerts, true_alerts, false, collateral, series_days, 1, groups)


def late_or_missed(spikes: list[SegmentSpike], cells: Cells, detect: dict[int, int], size_s: int,
                   target_s: int, minute_cells: Cells | None = None) -> list[dict[str, Any]]:
    """The 2x spikes of >= 15 min not detected within the target: where they start in their
    window of size_s, how long they last, and the counts (connected, hung up) of the window
    before, the one they start in and the next; with minute_cells, also those of the minutes
    from the one the spike starts in to the last the deadline allows."""
    out = []
    for i, sp in enumerate(spikes):
        if sp.factor != 2.0 or sp.minutes < 15 or detect.get(i, target_s + 1) <= target_s:
            continue
        start = sp.at_ms // 1000
        w0 = start - start % size_s
        wins = cells[(sp.dimension, sp.value)]
        row: dict[str, Any] = {"series": f"{sp.dimension}={sp.value}", "start_offset_s": start - w0,
                               "minutes": sp.minutes, "detect_s": detect.get(i),
                               "windows": [list(wins.get(w0 + k * size_s, (0, 0))) for k in (-1, 0, 1)]}
        if minute_cells is not None:
            m = minute_cells[(sp.dimension, sp.value)]
            m0 = start - start % 60
            row["minutes_to_deadline"] = [list(m.get(s, (0, 0))) for s in range(m0, start + target_s - 59, 60)]
        out.append(row)
    return out


def traffic(cells: Cells, from_s: int) -> dict[str, dict[str, float]]:
    """Per dimension: mean connected calls per 5-minute window with calls, and the hang-up rate."""
    out: dict[str, dict[str, float]] = {}
    for dim in ALERT_DIMENSIONS:
        per = [(c, h) for (d, _), w in cells.items() if d == dim for s, (c, h) in w.items() if s >= from_s]
        con = sum(c for c, _ in per)
        out[dim] = {"series": sum(1 for d, _ in cells if d == dim),
                    "connected_per_window": con / len(per) if per else 0.0,
                    "min_series_connected_per_window": min(
                        (_mean_connected(w, from_s) for (d, _), w in cells.items() if d == dim), default=0.0),
                    "hangup_rate": sum(h for _, h in per) / con if con else 0.0}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.alert_quality", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=8, help="days of the spike scenario (default %(default)s)")
    ap.add_argument("--steady-days", type=int, default=15, help="days of the steady scenario (default %(default)s)")
    ap.add_argument("--warmup-days", type=int, default=1)
    ap.add_argument("--rate", type=float, default=10.0,
                    help="calls/s over all series at the day's mean (default %(default)s: ~260 connected "
                         "calls per 5 min per branch)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12],
                    help="simulated worlds, pooled (default %(default)s)")
    ap.add_argument("--e2e", action="store_true",
                    help="also one short scenario through the real worker and sink (Kafka + ClickHouse)")
    ap.add_argument("--label", default="", help="a name for this run in the JSON (e.g. before / after)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    a = ap.parse_args(argv)
    console = Console()
    settings = Settings()
    cfg = alert_config(settings)
    grace = settings.worker.grace_s
    target_s = 600
    from_s = (START_MS + a.warmup_days * DAY_MS) // 1000
    measured_days = a.days - a.warmup_days
    t0 = time.perf_counter()
    console.print(f"alert quality: seeds {a.seeds}, each {a.steady_days} steady days + {a.days} with spikes at "
                  f"{a.rate} calls/s; detector {cfg}")
    per_seed: dict[int, dict[str, Any]] = {}
    steadies, spikies = [], []
    replay_s = 0.0
    for seed in a.seeds:
        base = SimConfig(seed=seed, rate=a.rate, duration_s=a.days * 86_400, start_ms=START_MS, daily_rhythm=True,
                         borrowers=2_000_000)
        spikes = spike_plan(a.days, a.warmup_days, base.branches, seed)
        steady_cells, _ = cached_cells(dataclasses.replace(base, duration_s=a.steady_days * 86_400),
                                       cfg.window_size_s, console)
        spike_cells, _ = cached_cells(dataclasses.replace(base, spikes=tuple(spikes)), cfg.window_size_s, console)
        n_series = len(steady_cells)
        steady_5 = coarsen(steady_cells, 300)  # traffic per 5 minutes, as the target states it
        busy = {k for k, w in steady_5.items() if _mean_connected(w, from_s) >= MIN_TRAFFIC}
        t1 = time.perf_counter()
        steady = score(replay(steady_cells, cfg), [], cfg, from_s, a.steady_days - a.warmup_days, n_series, target_s)
        spiky = score(replay(spike_cells, cfg), spikes, cfg, from_s, measured_days, n_series, target_s, busy)
        replay_s += time.perf_counter() - t1
        steadies.append(steady)
        spikies.append(spiky)
        per_seed[seed] = {"series": n_series, "traffic": traffic(steady_5, from_s),
                          "steady": _brief(steady), "spikes": _brief(spiky),
                          "late_or_missed": late_or_missed(spikes, coarsen(spike_cells, 300), spiky["detect_by_spike"],
                                                           300, target_s, spike_cells),
                          "spike_plan": [dataclasses.asdict(s) for s in spikes]}
    steady, spiky = pool(steadies, target_s), pool(spikies, target_s)
    n_series = per_seed[a.seeds[0]]["series"]
    t = Table(title=f"Spike alerts: seeds {' '.join(map(str, a.seeds))} x {n_series} series, {measured_days} days "
                    f"({a.steady_days - a.warmup_days} steady) after {a.warmup_days} warm-up, "
                    f"target: detected within {target_s // 60} min of the start (+ {grace // 60} min grace)")
    for col in ("spikes", "n", "recall", f"≤ {target_s // 60} min", "detect median / p90", "by dimension b/c/s"):
        t.add_column(col, justify="right")
    for label, g in spiky["groups"].items():
        med, p90 = g["detect_s_median"], g["detect_s_p90"]
        t.add_row(label, str(g["spikes"]), _fmt(g["recall"]), _fmt(g["within_target"]),
                  f"{med / 60:.1f} / {p90 / 60:.1f} min" if med is not None and p90 is not None else "-",
                  " ".join(f"{x}/{n}" for x, n in g["by_dimension"].values()))
    console.print(t)
    for seed, r in per_seed.items():
        g = r["spikes"]["groups"][TARGET_GROUP]
        console.print(f"seed {seed}: 2x >= 15 min within target {g['in_time']}/{g['spikes']}; false alerts steady "
                      f"{r['steady']['false']} ({r['steady']['false_per_day_per_100_series']:.2f} per day per 100 "
                      f"series), spike run {r['spikes']['false']}")
        for m in r["late_or_missed"]:
            when = "missed" if m["detect_s"] is None else f"{m['detect_s'] / 60:.1f} min"
            console.print(f"  late/missed: {m['series']} starts {m['start_offset_s'] / 60:.1f} min into its 5-min "
                          f"window, {m['minutes']:.0f} min; connected/hung up of the 5-min windows before/start/next "
                          f"{', '.join(f'{c}/{h}' for c, h in m['windows'])}, of the minutes to the deadline "
                          f"{' '.join(f'{c}/{h}' for c, h in m.get('minutes_to_deadline', []))}; detected {when}")
    console.print(f"spike run: {spiky['alerts']} alerts, {spiky['true']} true, {spiky['false']} false, "
                  f"{spiky['collateral']} collateral; precision {_fmt(spiky['precision'])}")
    console.print(f"steady run: {steady['false']} false alerts in {steady['series_days']:.0f} series-days = "
                  f"{steady['false_per_day_per_100_series']:.2f} per day per 100 series (spike run outside spikes: "
                  f"{spiky['false_per_day_per_100_series']:.2f})")
    tr = per_seed[a.seeds[0]]["traffic"]
    console.print(f"traffic (seed {a.seeds[0]}): " + "; ".join(
        f"{d} {v['series']:.0f} series, {v['connected_per_window']:.0f} connected per 5 min (smallest series "
        f"{v['min_series_connected_per_window']:.0f}), hang-up rate {v['hangup_rate']:.1%}" for d, v in tr.items()))
    e2e: dict[str, Any] | None = None
    if a.e2e:
        from bench.alert_e2e import run_e2e
        e2e = run_e2e(console)
    result = {
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "label": a.label, "code": _commit(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "detector": dataclasses.asdict(cfg), "grace_s": grace, "target_s": target_s, "series": n_series,
        "steady": _brief(steady), "spikes": _brief(spiky), "per_seed": per_seed, "e2e": e2e,
        "replay_s": round(replay_s, 2), "total_s": round(time.perf_counter() - t0, 1),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(result, indent=1)
    (a.out / f"alert-quality-{stamp}.json").write_text(text)
    (a.out / "alert-quality-latest.json").write_text(text)
    console.print(f"written {a.out / f'alert-quality-{stamp}.json'} ({result['total_s']} s)")
    return 0 if e2e is None or e2e["equal"] else 1


def _brief(score: dict[str, Any]) -> dict[str, Any]:
    """A score without its per-spike lists (kept in per_seed's late_or_missed instead)."""
    return {**{k: v for k, v in score.items() if k != "detect_by_spike"},
            "groups": {label: {k: v for k, v in g.items() if k not in ("times", "dims")}
                       for label, g in score["groups"].items()}}


def _mean_connected(wins: dict[int, tuple[int, int]], from_s: int) -> float:
    xs = [c for s, (c, _) in wins.items() if s >= from_s]
    return sum(xs) / len(xs) if xs else 0.0


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
