"""`hangwatch demo`: the whole pipeline for a bounded time, with a live summary.

simulator -> call-outcomes -> worker (subprocess) -> output topics -> sink (in this process) ->
embedded ClickHouse (chdb, the default store) -> the summary, which reads the store every two
seconds. The sink runs in this process because chdb lets one process open a store folder at a
time, and the summary needs to read it too.

So that flags and a spike alert appear within the minute, the demo runs in two phases:
1. history: `--history-hours` of calls in accelerated event time (the simulator's backfill
   mode), produced as fast as they are generated, from a small population (repeat refusers call
   again and again) with a hang-up spike on one branch near its end; the spike detector's
   trailing baseline is the history before it;
2. live: calls paced at `--rate` per second of wall time, continuing the history's event clock
   (calls of the same population: more repeat refusers are flagged while you watch).
Both phases stay inside the simulator's calling hours (08:00-22:00 Shanghai time): at night the
history is the evening before, shifted, so no call lands in the compliance quiet hours.

Each run is isolated: its own topic prefix, worker app id and worker state (deleted at the end),
and the summary counts only the rows stored during the run. The worker's grace period and idle
close are set for the demo only (HANGWATCH_WORKER__GRACE_S / IDLE_CLOSE_S in the worker's
environment, unless set already): a grace of 60 s, so windows become final a minute of event time
after they end (the history's spike windows within seconds of wall time), and an idle close
longer than the closing wait (DEMO_IDLE_CLOSE_S).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from hangwatch.cli.common import console, fail, fail_for, settings
from hangwatch.platform.settings import ROOT, Settings

# The simulator's calling hours are [08:00, 22:00) at UTC+8 (simulator.clock, Asia/Shanghai).
_SIM_OFFSET_MS: Final = 8 * 3_600_000
_DAY_MS: Final = 86_400_000
_CALL_FROM_MS: Final = 8 * 3_600_000
_CALL_TO_MS: Final = 22 * 3_600_000
SPIKE_BRANCH: Final = "shanghai-pudong"
HISTORY_RATE: Final = 4.0  # calls per second of event time: ~80 connected calls per branch and 5 min window
DEMO_BORROWERS: Final = 30_000  # ~1.4 calls per borrower in 3 h: repeat refusers stand out
DEMO_GRACE_S: Final = 60
# Longer than the demo's closing wait: the wall clock (at night hours ahead of the replayed
# event clock) never closes windows, which would resolve the spike alert with empty windows.
DEMO_IDLE_CLOSE_S: Final = 30.0

# The demo's own labels; the metrics' words and the display names come from the glossary.
_LABELS: Final[dict[str, dict[str, str]]] = {
    "zh-CN": {
        "elapsed": "已运行 {elapsed:.0f}/{duration:.0f} 秒", "phase.history": "回放历史", "phase.live": "实时",
        "phase.closing": "等待窗口关闭", "produced": "已发送 {n:,} 条",
        "eps": "入库 {eps:,.0f} 条/秒（峰值 {peak:,.0f}）",
        "stored": "已入库 {n:,} 行", "dlq": "死信 {n:,} 条", "flagged": "被标记借款人 {n:,} 名",
        "flags.title": "借款人标记示例（共 {n:,} 个标记）", "alerts.title": "突增告警", "alerts.none":
        "暂无突增告警（{branch}的突增窗口关闭后出现）", "branches.title": "本次演示各分行通话",
        "alert.rate": "挂断率", "alert.window": "时间窗口（{tz}）", "alert.value": "对象",
        "settings": "演示设置：历史 {hours:g} 小时（事件时间加速回放，{branch}于 {spike} 起挂断突增），"
                    "随后实时 {rate:g} 条/秒；本次仅对演示生效：HANGWATCH_WORKER__GRACE_S={grace}、"
                    "HANGWATCH_WORKER__IDLE_CLOSE_S={idle}（事件时间过后 {grace} 秒窗口即关闭）。",
        "finished": "演示结束",
        "data": "数据在 {where}（数据库 {db}）。", "query": "可以这样查询：",
        "worker_log": "Worker 日志：{path}",
    },
    "en": {
        "elapsed": "elapsed {elapsed:.0f}/{duration:.0f} s", "phase.history": "replaying history",
        "phase.live": "live", "phase.closing": "closing windows", "produced": "produced {n:,}",
        "eps": "{eps:,.0f} events/s stored (peak {peak:,.0f})", "stored": "stored {n:,} rows", "dlq": "DLQ {n:,}",
        "flagged": "borrowers flagged {n:,}", "flags.title": "Example borrower flags ({n:,} flags)",
        "alerts.title": "Spike alerts", "alerts.none": "no spike alert yet (it comes when the spike "
        "windows of {branch} close)", "branches.title": "Calls of this demo by branch",
        "alert.rate": "hang-up rate", "alert.window": "window ({tz})", "alert.value": "series",
        "settings": "Demo settings: {hours:g} h of history (accelerated event time; {branch} hangs up "
                    "more from {spike}), then {rate:g} calls/s live; for this run only: "
                    "HANGWATCH_WORKER__GRACE_S={grace}, HANGWATCH_WORKER__IDLE_CLOSE_S={idle} "
                    "(windows close {grace} s of event time after they end).",
        "finished": "demo finished",
        "data": "Data is in {where} (database {db}).", "query": "Query it with, for example:",
        "worker_log": "Worker log: {path}",
    },
}


def demo(
    duration: Annotated[float, typer.Option(help="Seconds of the demo (history replay, then live traffic).")] = 60.0,
    rate: Annotated[float, typer.Option(help="Calls per second offered live.")] = 200.0,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 7,
    malformed: Annotated[float, typer.Option(help="Share of malformed messages (they go to the DLQ).")] = 0.002,
    duplicates: Annotated[float, typer.Option(help="Share of duplicate deliveries (counted once).")] = 0.01,
    history_hours: Annotated[float, typer.Option(help="Hours of history replayed first, in accelerated event "
                                                      "time (the spike detector's baseline).", min=1.0,
                                                 max=12.0)] = 3.0,
    lang: Annotated[str | None, typer.Option("--lang", help="zh-CN or en (default: the language setting).",
                                             show_default=False)] = None,
) -> None:
    """Run simulator -> worker -> sink -> ClickHouse for DURATION seconds with a live summary:
    history with a spike first, then live traffic; flags and a spike alert appear within the minute."""
    from hangwatch.i18n import LANGUAGES
    from hangwatch.platform.kafka_admin import ensure_topics

    s = settings()
    language = lang or s.language
    if language not in LANGUAGES:
        raise fail(f"unknown language {language!r}; use one of {', '.join(LANGUAGES)}")
    tag = f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    log_dir = ROOT / ".local" / "demo"
    run = _run_settings(s, tag, log_dir)
    try:
        ensure_topics(run.kafka)
    except RuntimeError as e:
        raise fail_for(e) from e
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(_run(run, tag, language, duration, rate, seed, malformed, duplicates, history_hours, log_dir))
    finally:
        _cleanup(run, tag)


def _worker_overrides() -> dict[str, str]:
    """Grace and idle close for this run only, unless the environment sets them already."""
    out = {}
    for key, value in (("GRACE_S", str(DEMO_GRACE_S)), ("IDLE_CLOSE_S", str(DEMO_IDLE_CLOSE_S))):
        name = f"HANGWATCH_WORKER__{key}"
        out[name] = os.environ.get(name, value)
    return out


def _run_settings(s: Settings, tag: str, log_dir: Path) -> Settings:
    ov = _worker_overrides()
    worker = s.worker.model_copy(update={
        "app_id": tag, "data_dir": log_dir / "faust" / tag,
        "grace_s": int(float(ov["HANGWATCH_WORKER__GRACE_S"])),
        "idle_close_s": float(ov["HANGWATCH_WORKER__IDLE_CLOSE_S"])})
    kafka = s.kafka.model_copy(update={"topic_prefix": f"{s.kafka.topic_prefix}{tag}."})
    sink = s.sink.model_copy(update={"group_id": f"{tag}-sink"})
    return s.model_copy(update={"worker": worker, "kafka": kafka, "sink": sink})


def _worker_env(run: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(_worker_overrides())
    env["HANGWATCH_KAFKA__TOPIC_PREFIX"] = run.kafka.topic_prefix
    env["HANGWATCH_WORKER__APP_ID"] = run.worker.app_id
    env["HANGWATCH_WORKER__DATA_DIR"] = str(run.worker.data_dir)
    return env


def _cleanup(run: Settings, tag: str) -> None:
    """Delete the run's topics (its rows stay in ClickHouse) and the worker's local state."""
    from hangwatch.platform.kafka_admin import admin_client

    with contextlib.suppress(Exception):
        admin = admin_client(run.kafka)
        try:
            mine = [t for t in admin.list_topics() if t.startswith(run.kafka.topic_prefix) or t.startswith(tag)]
            if mine:
                admin.delete_topics(mine)
        finally:
            admin.close()
    shutil.rmtree(run.worker.data_dir, ignore_errors=True)


def history_end_ms(now_ms: int, history_ms: int, live_ms: int) -> int:
    """Where the history's event time ends: just before now when the history and the live phase
    after it fit in today's calling hours; else the latest calling day's evening, early enough
    for the live phase to end before 22:00 (the simulator never calls in quiet hours)."""
    margin = 5 * 60_000
    end = now_ms - 60_000
    day_start = end - (end + _SIM_OFFSET_MS) % _DAY_MS  # local midnight, in epoch ms
    if day_start + _CALL_FROM_MS <= end - history_ms and end + live_ms + margin <= day_start + _CALL_TO_MS:
        return end
    latest = day_start + _CALL_TO_MS - live_ms - margin
    return latest if latest <= end else latest - _DAY_MS


async def _run(run: Settings, tag: str, language: str, duration: float, rate: float, seed: int, malformed: float,
               duplicates: float, history_hours: float, log_dir: Path) -> None:
    from hangwatch.i18n import words_for
    from hangwatch.platform.timeparse import local_zone
    from hangwatch.simulator import FaultConfig, SegmentSpike, SimConfig, generate, paced, produce
    from hangwatch.sinks import migrate
    from hangwatch.sinks.backends import database_name, open_backend, where
    from hangwatch.sinks.writer import run_sink
    from hangwatch.streams.core.rules_config import load_rules

    words = words_for(run, language)
    labels = _LABELS[language]
    tz = local_zone(run)
    try:
        rules = load_rules(run.worker.rules_file, run.timezone)
    except Exception:  # explanations then fall back to the stored sentence
        rules = None
    started = datetime.now(tz=UTC).replace(microsecond=0)
    history_ms = int(history_hours * 3_600_000)
    end_ms = history_end_ms(int(time.time() * 1000), history_ms, int(duration * 1000))
    # the spike runs to the end of the history: its alert fires early and is still firing live
    spike = SegmentSpike("branch", SPIKE_BRANCH, end_ms - 20 * 60_000, 20.0, 4.0)
    faults = FaultConfig(malformed=malformed, duplicates=duplicates, grace_s=run.worker.grace_s,
                         ooo_window_s=min(30.0, run.worker.grace_s / 2))
    history = SimConfig(seed=seed, rate=HISTORY_RATE, start_ms=end_ms - history_ms, duration_s=history_ms / 1000,
                        borrowers=DEMO_BORROWERS, refuser_share=0.03, spikes=(spike,), faults=faults)
    offset_s = time.time() - end_ms / 1000  # the live phase continues the history's event clock

    def event_clock() -> float:
        return time.time() - offset_s

    worker_log = log_dir / "worker.log"
    with open(worker_log, "ab") as wl:
        worker = subprocess.Popen([sys.executable, "-m", "hangwatch", "worker"], stdout=wl, stderr=subprocess.STDOUT,
                                  cwd=ROOT, env=_worker_env(run))
    backend = await asyncio.to_thread(open_backend, run.clickhouse)
    db = database_name(run.clickhouse)
    await asyncio.to_thread(migrate.apply, backend, db, run.clickhouse.retention_days)
    stop_sink = asyncio.Event()
    sink_task = asyncio.create_task(run_sink(run, stop_sink, backend=backend))
    produced = {"n": 0, "history": 0}
    phase = {"name": "phase.history"}
    topic = run.kafka.topic("call-outcomes")
    ov = _worker_overrides()
    console.print(labels["settings"].format(
        hours=history_hours, branch=words.name("branch", SPIKE_BRANCH),
        spike=datetime.fromtimestamp(spike.at_ms / 1000, tz).strftime("%Y-%m-%d %H:%M"), rate=rate,
        grace=ov["HANGWATCH_WORKER__GRACE_S"], idle=ov["HANGWATCH_WORKER__IDLE_CLOSE_S"]))

    def on_history(n: int) -> None:
        produced["n"] = produced["history"] = n

    def on_live(n: int) -> None:
        produced["n"] = produced["history"] + n

    t0 = time.monotonic()

    async def simulate() -> None:
        await produce(generate(history), run.kafka, topic, on_progress=on_history)
        phase["name"] = "phase.live"
        live_s = max(5.0, duration - (time.monotonic() - t0))
        live = SimConfig(seed=seed, rate=rate, duration_s=live_s, borrowers=DEMO_BORROWERS, refuser_share=0.03,
                         faults=faults)
        await produce(paced(generate(live, clock=event_clock), rate), run.kafka, topic, on_progress=on_live)
        phase["name"] = "phase.closing"

    sim_task = asyncio.create_task(simulate())
    ctx = _View(words, labels, tz, rules, db, started, duration)
    try:
        with Live(console=console, refresh_per_second=2) as live:
            while True:
                await asyncio.sleep(2)
                if worker.poll() is not None:
                    raise fail(f"the worker exited with code {worker.returncode}; see {worker_log}")
                if sink_task.done():
                    sink_task.result()  # raises the sink's error
                    raise fail("the sink stopped unexpectedly")
                live.update(await asyncio.to_thread(ctx.summary, backend, produced["n"], time.monotonic() - t0,
                                                    labels[phase["name"]]))
                if sim_task.done():
                    sim_task.result()
                    # a few seconds for the last windows (idle close) and rows to land
                    if time.monotonic() - t0 > duration + 8 or (ctx.alerts and time.monotonic() - t0 > duration + 4):
                        break
    finally:
        sim_task.cancel()
        worker.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(30)
        if worker.poll() is None:
            worker.kill()
        stop_sink.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sink_task, 30)
        backend.close()
    console.print()
    since = datetime.fromtimestamp((end_ms - history_ms) / 1000, tz).strftime("%Y-%m-%d %H:%M")
    console.print(Panel.fit(
        labels["data"].format(where=where(run.clickhouse), db=db) + "\n" + labels["query"] + "\n"
        "  .venv/bin/hangwatch query current_rates --dimension branch\n"
        "  .venv/bin/hangwatch query rolling_rates --minutes 15\n"
        "  .venv/bin/hangwatch query top_flagged_borrowers\n"
        "  .venv/bin/hangwatch query dlq_summary\n"
        f"  .venv/bin/hangwatch export flags --since '{since}' --out flags.xlsx\n"
        "  .venv/bin/hangwatch report --since 1d --out report.html\n"
        + labels["worker_log"].format(path=worker_log),
        title=labels["finished"]))


class _View:
    """The live summary: this run's rows only (ingested since it started), in one language."""

    def __init__(self, words: Any, labels: Mapping[str, str], tz: tzinfo, rules: Any, db: str, started: datetime,
                 duration: float) -> None:
        self.w, self.labels, self.tz, self.rules, self.db, self.duration = words, labels, tz, rules, db, duration
        self.since = f"toDateTime({int(started.timestamp())}, 'UTC')"
        self.alerts: list[dict[str, Any]] = []
        self._last: tuple[float, int] = (0.0, 0)  # (elapsed, stored) of the previous summary
        self._peak = 0.0

    def _rows(self, backend: Any, sql: str) -> list[dict[str, Any]]:
        try:
            return list(backend.query(sql).dicts())
        except Exception:  # the tables may not exist for the first second
            return []

    def summary(self, backend: Any, produced: int, elapsed: float, phase: str) -> Group:
        from hangwatch.i18n.explain import flag_explanation

        w, lb, db, since = self.w, self.labels, self.db, self.since
        totals = (self._rows(backend, f"SELECT count() AS n FROM {db}.call_events FINAL WHERE ingested_at >= {since}")
                  or [{"n": 0}])[0]
        dlq = (self._rows(backend, f"SELECT uniqExact(source_topic, source_partition, source_offset) AS n "
                                   f"FROM {db}.dead_letters WHERE ingested_at >= {since}") or [{"n": 0}])[0]
        flags = self._rows(backend, f"""
            SELECT flag_id, argMax(borrower_id, emitted_at_ms) AS borrower_id,
                   argMax(rule_id, emitted_at_ms) AS rule_id,
                   toString(argMax(status, emitted_at_ms)) AS status, argMax(explanation, emitted_at_ms) AS explanation,
                   argMax(last_event_at, emitted_at_ms) AS last_event_at,
                   argMax(evidence_outcome, emitted_at_ms) AS ev_outcome,
                   argMax(evidence_hangup_stage, emitted_at_ms) AS ev_hangup_stage,
                   argMax(evidence_occurred_at, emitted_at_ms) AS ev_occurred_at,
                   argMax(evidence_channel, emitted_at_ms) AS ev_channel, max(emitted_at_ms) AS emitted
            FROM {db}.borrower_flags WHERE ingested_at >= {since} GROUP BY flag_id""")
        self.alerts = self._rows(backend, f"""
            SELECT alert_id, toString(argMax(status, version)) AS status, any(dimension) AS dimension,
                   any(value) AS value, any(window_size_s) AS window_size_s,
                   argMin(window_start, version) AS window_start, argMin(window_end, version) AS window_end,
                   argMin(hangup_rate, version) AS hangup_rate, argMin(baseline_rate, version) AS baseline_rate,
                   argMin(connected, version) AS connected, argMin(wilson_low, version) AS wilson_low,
                   argMin(baseline_connected, version) AS baseline_connected
            FROM {db}.hangup_alerts WHERE ingested_at >= {since} GROUP BY alert_id ORDER BY window_start""")
        branches = self._rows(backend, f"""
            SELECT branch, count() AS attempts,
                   countIf(outcome IN ('completed', 'hung_up', 'refused', 'wrong_party')) AS connected,
                   countIf(outcome = 'hung_up') AS hung_up, countIf(outcome = 'declined') AS declined
            FROM {db}.call_events FINAL WHERE ingested_at >= {since} GROUP BY branch ORDER BY branch""")
        stored = int(totals.get("n") or 0)
        flagged = len({f["borrower_id"] for f in flags})
        eps = (stored - self._last[1]) / max(elapsed - self._last[0], 1e-9)  # rows stored per second, lately
        self._last = (elapsed, stored)
        self._peak = max(self._peak, eps)
        head = Table.grid(padding=(0, 3))
        head.add_row(lb["elapsed"].format(elapsed=elapsed, duration=self.duration), phase,
                     lb["produced"].format(n=produced), lb["eps"].format(eps=eps, peak=self._peak),
                     lb["stored"].format(n=stored), lb["dlq"].format(n=int(dlq.get("n") or 0)),
                     lb["flagged"].format(n=flagged))

        ft = Table(title=lb["flags.title"].format(n=len(flags)), title_justify="left")
        for key in ("borrower", "rule", "status", "explanation"):
            ft.add_column(w.term(key), no_wrap=key != "explanation")
        ranked = sorted(flags, key=lambda f: (f["rule_id"] != "repeated_refusal", f["status"] == "resolved",
                                              -int(f["emitted"] or 0)))
        for f in ranked[:4]:
            ft.add_row(str(f["borrower_id"]), w.name("rule", f["rule_id"]), w.name("status", f["status"]),
                       flag_explanation(w, f, self.rules, self.tz))

        at = Table(title=lb["alerts.title"], title_justify="left")
        at.add_column(lb["alert.value"], no_wrap=True)
        at.add_column(w.term("status"), no_wrap=True)
        at.add_column(lb["alert.rate"], justify="right")
        at.add_column(w.term("baseline"), justify="right")
        at.add_column(lb["alert.window"].format(tz=str(self.tz)), no_wrap=True)
        for a in self.alerts:
            dim = str(a["dimension"])
            at.add_row(f"{w.name('dimension', dim)} {w.name(dim, a['value'])}", w.name("status", a["status"]),
                       f"{_pct(a['hangup_rate'])} ({a['connected']})",
                       f"{_pct(a['baseline_rate'])} ({a['baseline_connected']})",
                       _local(a["window_start"], self.tz, "%Y-%m-%d %H:%M") + "–"
                       + _local(a["window_end"], self.tz, "%H:%M"))
        parts: list[Any] = [head, ft]
        if self.alerts:
            parts.append(at)
        else:
            parts.append(lb["alerts.none"].format(branch=w.name("branch", SPIKE_BRANCH)))

        bt = Table(title=lb["branches.title"], title_justify="left")
        bt.add_column(w.name("dimension", "branch"), min_width=10, no_wrap=True)
        for key in ("attempts", "connected", "hung_up", "hangup_rate", "decline_rate"):
            bt.add_column(w.term(key), justify="right")
        for r in branches:
            attempts, connected = int(r["attempts"]), int(r["connected"])
            bt.add_row(w.name("branch", r["branch"]), f"{attempts:,}", f"{connected:,}", f"{int(r['hung_up']):,}",
                       _pct(int(r["hung_up"]) / connected if connected else None),
                       _pct(int(r["declined"]) / attempts if attempts else None))
        parts.append(bt)
        return Group(*parts)


def _local(t: Any, tz: tzinfo, fmt: str) -> str:
    if isinstance(t, str):
        t = datetime.fromisoformat(t)
    if not isinstance(t, datetime):
        return "-"
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(tz).strftime(fmt)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f} %"


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
