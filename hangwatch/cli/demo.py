"""`hangwatch demo`: the whole pipeline for a bounded time, with a live summary.

simulator (live, paced) -> call-outcomes -> worker (subprocess) -> output topics -> sink (in
this process) -> embedded ClickHouse (chdb, the default store) -> the summary, which reads the
store through the query catalogue (sinks.catalogue) every two seconds. The sink runs in this process because chdb lets
one process open a store folder at a time, and the summary needs to read it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from hangwatch.cli.common import console, fail, settings
from hangwatch.platform.settings import ROOT, Settings


def demo(
    duration: Annotated[float, typer.Option(help="Seconds of live traffic.")] = 60.0,
    rate: Annotated[float, typer.Option(help="Calls per second offered.")] = 200.0,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 7,
    malformed: Annotated[float, typer.Option(help="Share of malformed messages (they go to the DLQ).")] = 0.002,
    duplicates: Annotated[float, typer.Option(help="Share of duplicate deliveries (counted once).")] = 0.01,
) -> None:
    """Run simulator -> worker -> sink -> ClickHouse for DURATION seconds with a live summary."""
    from hangwatch.platform.kafka_admin import ensure_topics

    s = settings()
    try:
        ensure_topics(s.kafka)
    except RuntimeError as e:
        raise fail(str(e)) from e
    log_dir = ROOT / ".local" / "demo"
    log_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_run(s, duration, rate, seed, malformed, duplicates, log_dir))


async def _run(s: Settings, duration: float, rate: float, seed: int, malformed: float, duplicates: float,
               log_dir: Path) -> None:
    from hangwatch.simulator import FaultConfig, SimConfig, generate, paced, produce
    from hangwatch.sinks import migrate
    from hangwatch.sinks.backends import database_name, open_backend, where
    from hangwatch.sinks.writer import run_sink

    worker_log = log_dir / "worker.log"
    with open(worker_log, "ab") as wl:
        worker = subprocess.Popen([sys.executable, "-m", "hangwatch", "worker"], stdout=wl, stderr=subprocess.STDOUT,
                                  cwd=ROOT)
    backend = await asyncio.to_thread(open_backend, s.clickhouse)
    db = database_name(s.clickhouse)
    await asyncio.to_thread(migrate.apply, backend, db, s.clickhouse.retention_days)
    stop_sink = asyncio.Event()
    sink_task = asyncio.create_task(run_sink(s, stop_sink, backend=backend))
    produced = {"n": 0}
    cfg = SimConfig(seed=seed, rate=rate, duration_s=duration,
                    faults=FaultConfig(malformed=malformed, duplicates=duplicates, grace_s=s.worker.grace_s))

    def on_progress(n: int) -> None:
        produced["n"] = n

    async def simulate() -> None:
        await produce(paced(generate(cfg), rate), s.kafka, s.kafka.topic("call-outcomes"), on_progress=on_progress)

    t0 = time.monotonic()
    sim_task = asyncio.create_task(simulate())
    try:
        with Live(console=console, refresh_per_second=2) as live:
            while True:
                if worker.poll() is not None:
                    raise fail(f"the worker exited with code {worker.returncode}; see {worker_log}")
                if sink_task.done():
                    sink_task.result()  # raises the sink's error
                    raise fail("the sink stopped unexpectedly")
                live.update(await asyncio.to_thread(_summary, backend, db, produced["n"], time.monotonic() - t0,
                                                    duration))
                if sim_task.done() and time.monotonic() - t0 > duration + 8:
                    break  # a few seconds for the last windows and rows to land
                await asyncio.sleep(2)
            sim_task.result()
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
    console.print(Panel.fit(
        f"Data is in {where(s.clickhouse)} (database {db}).\n"
        "Query it with, for example:\n"
        "  .venv/bin/hangwatch query current_rates --dimension branch\n"
        "  .venv/bin/hangwatch query rolling_rates --minutes 15\n"
        "  .venv/bin/hangwatch query top_flagged_borrowers\n"
        "  .venv/bin/hangwatch query dlq_summary\n"
        "  .venv/bin/hangwatch report --since 1h --out report.html\n"
        f"Worker log: {worker_log}",
        title="demo finished"))


def _summary(backend: Any, db: str, produced: int, elapsed: float, duration: float) -> Group:
    from hangwatch.sinks import catalogue

    ctx = catalogue.Context.of(settings(), catalogue.FixedFrame(), db)

    def rows(name: str, **params: Any) -> list[dict[str, Any]]:
        try:
            return catalogue.run(backend, name, ctx, **params).dicts()
        except Exception as e:  # the tables may not exist for the first second
            return [{"error": str(e)[:80]}]

    stored = backend.query(f"SELECT count() FROM {db}.call_events FINAL").scalar() or 0
    dlq = backend.query(f"SELECT uniqExact(source_topic, source_partition, source_offset) "
                        f"FROM {db}.dead_letters").scalar() or 0
    flags = backend.query(f"SELECT uniqExact(flag_id) FROM {db}.borrower_flags").scalar() or 0
    head = Table.grid(padding=(0, 3))
    head.add_row(f"elapsed {elapsed:5.0f}/{duration:.0f} s", f"produced {produced:,}",
                 f"{produced / max(min(elapsed, duration), 1e-9):,.0f} events/s offered", f"stored {stored:,}",
                 f"DLQ {dlq:,}", f"borrowers flagged {flags:,}")
    t = Table(title="last 15 minutes by branch (from the 60 s windows)")
    t.add_column("branch", min_width=18, no_wrap=True)
    for name in ("attempts", "connected", "hung up", "hang-up rate", "decline rate"):
        t.add_column(name, justify="right")
    for r in rows("rolling_rates", minutes=15, dimension="branch"):
        if "error" in r:
            continue
        t.add_row(str(r["value"]), f"{r['attempts']:,}", f"{r['connected']:,}", f"{r['hung_up']:,}",
                  _pct(r.get("hangup_rate")), _pct(r.get("decline_rate")))
    return Group(head, t)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f} %"


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
