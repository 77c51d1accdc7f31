"""`hangwatch reconcile`: recompute closed rate windows from the stored events (late data)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from hangwatch.cli.common import console, fail_for, settings, time_range
from hangwatch.platform.timeparse import TIME_FORMS
from hangwatch.sinks.backends import BackendError, opened, where
from hangwatch.sinks.reconcile import reconcile


def reconcile_cmd(
    since: Annotated[str, typer.Option(help=f"Start of the range: {TIME_FORMS}.")] = "24h",
    until: Annotated[str | None, typer.Option(help="End of the range, in the same forms (default: now).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count the corrections; write nothing.")] = False,
    every: Annotated[float | None, typer.Option(help="Repeat every this many seconds (a schedule) until Ctrl-C.")]
    = None,
) -> None:
    """Correct hangup_rates where stored events (e.g. hours late) change closed windows.

    Windows that end within the stream's grace period (worker.grace_s) are left to the stream."""
    s = settings()
    time_range(since, until)  # a bad --since/--until fails now, not at the first repetition
    try:
        while True:
            now = datetime.now(tz=UTC)
            start, end = time_range(since, until, now=now)
            closed_before = now - timedelta(seconds=s.worker.grace_s)
            with opened(s.clickhouse) as (backend, db):
                report = reconcile(backend, db, start, end, s.worker.window_sizes_s, closed_before=closed_before,
                                   dry_run=dry_run)
            console.print(f"reconcile {start:%Y-%m-%d %H:%M} .. {min(end, closed_before):%Y-%m-%d %H:%M} UTC: "
                          f"{report.windows} window cells compared, {report.corrected} "
                          f"{'would be corrected' if dry_run else 'corrected'} "
                          f"({', '.join(f'{k} s: {v}' for k, v in report.by_size.items())})")
            if not every:
                return
            time.sleep(every)
    except (BackendError, ValueError) as e:
        raise fail_for(e, where=where(s.clickhouse)) from e
    except KeyboardInterrupt:
        console.print("stopped")


def register(app: typer.Typer) -> None:
    app.command("reconcile")(reconcile_cmd)
