"""`hangwatch simulate`: synthetic call outcomes (with injected faults) to Kafka or a JSONL
file, and `hangwatch simulate replay FILE` to send such a file to Kafka in order.

Backfill (--start given): event times run from --start at --rate calls per second of event
time and records go out as fast as possible; with an absolute --start and --seed the output
is byte-identical on every run. Live (no --start): each call happens now, paced at --rate.

JSONL (--out FILE.jsonl, or - for stdout): one record per line,
  {"key": "b-…" | null, "value": {the event as sent} | "value_b64": "…", "fault": …, …}
with exact bytes kept (see simulator/jsonl.py); `replay` sends the lines in file order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hangwatch.cli.common import console, fail, settings
from hangwatch.platform.timeparse import DURATION_FORMS, TIME_FORMS, local_zone, parse_duration, parse_time, to_ms
from hangwatch.schemas.topics import CALL_OUTCOMES
from hangwatch.simulator import (
    SCENARIOS,
    FaultConfig,
    SimConfig,
    SimRecord,
    SpikeConfig,
    generate,
    paced,
    produce,
    read_jsonl,
)
from hangwatch.simulator.config import BRANCHES
from hangwatch.simulator.jsonl import record_to_line

log = logging.getLogger("hangwatch.simulate")

simulate_app = typer.Typer()  # help: the docstring of simulate() below

_PROGRESS_EVERY = 2048  # records between progress bar updates: updating per record costs more than generating


@simulate_app.callback(invoke_without_command=True)
def simulate(
    ctx: typer.Context,
    rate: Annotated[float, typer.Option(help="Calls per second: of event time with --start, of wall time live.")]
    = 50.0,
    count: Annotated[int | None, typer.Option(help="Number of calls (duplicates and malformed messages come on top). "
                                                   "With --duration too, whichever ends first.")]
    = None,
    duration: Annotated[str | None, typer.Option(help="Event time to span (with --start) or wall time to run "
                                                      f"(live): {DURATION_FORMS}.")] = None,
    start: Annotated[str | None, typer.Option(help=f"Backfill from this event time: {TIME_FORMS}. Without an "
                                                   "offset it is read in worker.timezone. Omit for live "
                                                   "traffic. Only an absolute time is reproducible.")] = None,
    seed: Annotated[int | None, typer.Option(help="RNG seed; same seed and options = same bytes. Default: "
                                                  "random (printed).")] = None,
    borrowers: Annotated[int | None, typer.Option(help="Borrower population size. Default: rate x 1,000,000, "
                                                       "so a borrower gets about one case a month.")] = None,
    refusers: Annotated[float, typer.Option(help="Share of borrowers who mostly hang up, refuse or decline.")]
    = 0.02,
    scenario: Annotated[str, typer.Option(help=f"One of {', '.join(SCENARIOS)}.")] = "none",
    spike_branch: Annotated[str, typer.Option(help=f"branch_spike: the branch, one of {', '.join(BRANCHES)}.")]
    = BRANCHES[0],
    spike_at: Annotated[str, typer.Option(help="branch_spike: when it starts: a time as for --start, or "
                                                "start+1h (--start, or now when live).")]
    = "start+1h",
    spike_minutes: Annotated[float, typer.Option(help="branch_spike: how long it lasts.")] = 15.0,
    spike_factor: Annotated[float, typer.Option(help="branch_spike: hang-up probability multiplier.")] = 3.0,
    quiet_share: Annotated[float, typer.Option(help="quiet_hours: share of calls at 22:00-08:00 Asia/Shanghai "
                                                    "(backfill only).")] = 0.1,
    duplicates: Annotated[float, typer.Option(help="Share of calls re-sent (same key and bytes).")] = 0.0,
    out_of_order: Annotated[float, typer.Option(help="Share of calls delivered late but within the grace "
                                                     "period.")] = 0.0,
    late: Annotated[float, typer.Option(help="Share of calls delivered 20-60 min late (beyond the grace "
                                             "period).")] = 0.0,
    malformed: Annotated[float, typer.Option(help="Share of calls followed by a contract-breaking message.")]
    = 0.0,
    ooo_window: Annotated[str, typer.Option(help="Out-of-order calls arrive up to this much later.")] = "30s",
    grace: Annotated[str | None, typer.Option(help="Consumer grace period for labelling late records "
                                                   "(default: worker.grace_s).")] = None,
    out: Annotated[str, typer.Option(help="'kafka', a .jsonl file path, or '-' for JSONL on stdout.")] = "kafka",
    topic: Annotated[str | None, typer.Option(help="Kafka topic (default: call-outcomes with the configured "
                                                   "topic prefix).")] = None,
    compression: Annotated[str, typer.Option(help="lz4 or none.")] = "lz4",
    linger_ms: Annotated[int, typer.Option(help="Producer linger (ms).")] = 20,
    batch_size: Annotated[int, typer.Option(help="Producer batch size (bytes).")] = 512 * 1024,
) -> None:
    """Simulate call outcomes (hang-ups, refusals, declines...) with optional faults, to Kafka or a JSONL
    file. `hangwatch simulate replay FILE` sends such a file to Kafka.

    Examples:

      hangwatch simulate --start "2026-11-27 08:00" --count 100000 --seed 7

      hangwatch simulate --rate 200 --duration 10m --duplicates 0.01 --malformed 0.001

      hangwatch simulate --start now-3h --duration 3h --scenario branch_spike --spike-at start+2h --out run.jsonl
    """
    if ctx.invoked_subcommand is not None:
        return
    s = settings()
    now = datetime.now(tz=UTC)
    try:
        tz = local_zone(s)
        start_at = parse_time(start, now=now, tz=tz) if start is not None else None
        # `start` names the backfill's first event time, or now for live traffic.
        spike_at_ms = to_ms(parse_time(spike_at, now=now, tz=tz, anchors={"start": start_at or now}))
        cfg = SimConfig(
            seed=seed if seed is not None else int.from_bytes(os.urandom(4), "big"),
            rate=rate, count=count, start_ms=to_ms(start_at) if start_at else None,
            duration_s=_seconds(duration) if duration is not None else None,
            borrowers=borrowers, refuser_share=refusers, scenario=scenario,  # type: ignore[arg-type]
            spike=SpikeConfig(branch=spike_branch, at_ms=spike_at_ms, minutes=spike_minutes, factor=spike_factor),
            quiet_share=quiet_share,
            faults=FaultConfig(duplicates=duplicates, out_of_order=out_of_order, late=late, malformed=malformed,
                               ooo_window_s=_seconds(ooo_window),
                               grace_s=_seconds(grace) if grace is not None else float(s.worker.grace_s)),
        )
        _check_output(out, compression)
    except ValueError as e:
        raise fail(str(e), 2) from e
    if cfg.live and cfg.count is None and cfg.duration_s is None:
        console.print("[dim]live traffic without --count or --duration: press Ctrl-C to stop[/dim]")
    elif not cfg.live and cfg.count is None and cfg.duration_s is None:
        raise fail("a backfill (--start) needs --count or --duration", 2)
    if cfg.live and cfg.scenario == "quiet_hours":
        log.warning("scenario quiet_hours places calls in quiet hours only in a backfill; live calls happen now")
    log.info("seed %d, %s, scenario %s", cfg.seed, "live" if cfg.live else "backfill", cfg.scenario)

    counts: Counter[str] = Counter()
    target = topic or s.kafka.topic(CALL_OUTCOMES)
    started = time.perf_counter()
    try:
        delivered = asyncio.run(_run(generate(cfg), counts, out, target, compression, linger_ms, batch_size,
                                     rate=cfg.rate if cfg.live else None, total=cfg.count))
    except RuntimeError as e:
        raise fail(str(e)) from e
    _summary(counts, delivered, time.perf_counter() - started, out if out != "kafka" else f"kafka topic {target}")


@simulate_app.command("replay")
def replay_cmd(
    file: Annotated[Path, typer.Argument(help="JSONL file written by `hangwatch simulate --out FILE.jsonl`.",
                                         exists=True, dir_okay=False, readable=True)],
    topic: Annotated[str | None, typer.Option(help="Kafka topic (default: call-outcomes with the configured "
                                                   "topic prefix).")] = None,
    rate: Annotated[float | None, typer.Option(help="Records per second of wall time (default: as fast as "
                                                    "possible).")] = None,
    compression: Annotated[str, typer.Option(help="lz4 or none.")] = "lz4",
    linger_ms: Annotated[int, typer.Option(help="Producer linger (ms).")] = 20,
    batch_size: Annotated[int, typer.Option(help="Producer batch size (bytes).")] = 512 * 1024,
) -> None:
    """Send a JSONL file of records to Kafka in file order, bytes unchanged (keys decide partitions)."""
    try:
        _check_output("kafka", compression)
        if rate is not None and not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        first = next(iter(read_jsonl(file)), None)  # fail on a broken first line before connecting
    except ValueError as e:
        raise fail(str(e), 2) from e
    if first is None:
        raise fail(f"{file} holds no records", 2)
    counts: Counter[str] = Counter()
    target = topic or settings().kafka.topic(CALL_OUTCOMES)
    started = time.perf_counter()
    try:
        delivered = asyncio.run(_run(read_jsonl(file, events=False), counts, "kafka", target, compression,
                                     linger_ms, batch_size, rate=rate, total=None))
    except (RuntimeError, ValueError) as e:
        raise fail(str(e)) from e
    _summary(counts, delivered, time.perf_counter() - started, f"kafka topic {target}")


def _seconds(text: str) -> float:
    return parse_duration(text).total_seconds()


def _check_output(out: str, compression: str) -> None:
    if compression not in ("lz4", "none"):
        raise ValueError(f"compression must be lz4 or none, got {compression!r}")
    if out in ("kafka", "-"):
        return
    if not out.endswith(".jsonl"):
        raise ValueError(f"--out must be 'kafka', '-' or a path ending in .jsonl, got {out!r}")
    parent = Path(out).resolve().parent
    if not parent.is_dir():
        raise ValueError(f"directory {parent} does not exist")


async def _run(records: Iterable[SimRecord], counts: Counter[str], out: str, topic: str, compression: str,
               linger_ms: int, batch_size: int, *, rate: float | None, total: int | None) -> int:
    """Drive records to the output with a progress bar, paced at `rate` if given, until done or
    Ctrl-C (which stops generating and still delivers what was generated)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signal handlers off the main thread
        loop.add_signal_handler(signal.SIGINT, stop.set)
    with Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TextColumn("{task.fields[speed]}"), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("generated", total=total, speed="")

        def report(n: int, speed: float, done: bool) -> None:
            progress.update(task, completed=n, total=n if done else total, speed=f"{speed:,.0f}/s")

        tracked = _tracked(records, counts, stop, report)
        # Backfills stay a plain (synchronous) iterator: an async generator per record costs
        # more than producing it.
        source: Iterable[SimRecord] | AsyncIterator[SimRecord] = paced(tracked, rate) if rate else tracked
        if out == "kafka":
            return await produce(source, settings().kafka, topic, linger_ms=linger_ms, max_batch_size=batch_size,
                                 compression=compression)  # type: ignore[arg-type]
        return await _write(source, out)


def _tracked(records: Iterable[SimRecord], counts: Counter[str], stop: asyncio.Event,
             report: Callable[[int, float, bool], None]) -> Iterator[SimRecord]:
    """Count records by fault, report progress, and end early once `stop` is set."""
    started = time.perf_counter()
    n = 0
    for r in records:
        counts[r.fault or "in_order"] += 1
        yield r
        n += 1
        if n % _PROGRESS_EVERY == 0:
            report(n, n / (time.perf_counter() - started), False)
        if stop.is_set():  # after the yield: a record taken from the generator is always sent
            break
    report(n, n / max(time.perf_counter() - started, 1e-9), True)


async def _write(records: Iterable[SimRecord] | AsyncIterator[SimRecord], out: str) -> int:
    n = 0
    with contextlib.ExitStack() as stack:
        f: BinaryIO = sys.stdout.buffer if out == "-" else stack.enter_context(open(out, "wb", buffering=1 << 20))
        if isinstance(records, AsyncIterator):
            async for r in records:
                f.write(record_to_line(r))
                n += 1
        else:
            for r in records:
                f.write(record_to_line(r))
                n += 1
                if n % 4096 == 0:
                    await asyncio.sleep(0)  # lets the Ctrl-C handler run
        f.flush()
    return n


def _summary(counts: Counter[str], delivered: int, elapsed_s: float, where: str) -> None:
    t = Table("records", "count", title=f"sent to {where}")
    for k in ("in_order", "out_of_order", "late", "duplicate", "malformed"):
        if counts.get(k):
            t.add_row(k, f"{counts[k]:,}")
    t.add_row("total", f"{sum(counts.values()):,}")
    t.add_row("delivered", f"{delivered:,}")
    t.add_row("events/s", f"{delivered / max(elapsed_s, 1e-9):,.0f}")
    console.print(t)
    if delivered != sum(counts.values()):
        raise fail(f"only {delivered:,} of {sum(counts.values()):,} records were delivered")


def register(app: typer.Typer) -> None:
    app.add_typer(simulate_app, name="simulate")
