"""`hangwatch rollups`: recompute the rollups from the stored events for a time range."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from hangwatch.cli.common import console, fail_for, settings, time_range
from hangwatch.platform.timeparse import TIME_FORMS, local_zone_name
from hangwatch.sinks import rollup
from hangwatch.sinks.backends import BackendError, opened, where

log = logging.getLogger("hangwatch.rollups")


def rollups_cmd(
    since: Annotated[str, typer.Option(help=f"Start of the range: {TIME_FORMS}.")] = "400d",
    until: Annotated[str | None, typer.Option(help="End of the range, in the same forms (default: now).")] = None,
    compact_only: Annotated[bool, typer.Option(
        "--compact-only", help="Only the compact rollups (migration 0016), from the stored rollup_1m/1h.")] = False,
) -> None:
    """Recompute rollup_1m, rollup_1h and rollup_1d from call_events, one local day at a time.

    The sink keeps the rollups up to date by itself. Run this once after the upgrade that added
    them (migration 0012: events stored before have no rollups yet), or after changing the
    `timezone` setting (day rows follow local midnight). Safe to repeat and to run while the
    sink runs: a recompute never counts an event twice. After the upgrade that added the compact
    rollups (migration 0016), `--compact-only` fills them from the stored rollups (faster)."""
    s = settings()
    start, end = time_range(since, until)
    tz = local_zone_name(s)
    try:
        with opened(s.clickhouse) as (backend, db):
            days = rollup.rebuild(backend, db, tz, start, end, compact_only=compact_only)
    except (BackendError, ValueError) as e:
        raise fail_for(e, where=where(s.clickhouse)) from e
    what = "compact rollups" if compact_only else "rollups"
    console.print(f"{what} recomputed for {days} local days ({tz}) from {start:%Y-%m-%d %H:%M} to "
                  f"{end:%Y-%m-%d %H:%M} UTC")


def register(app: typer.Typer) -> None:
    app.command("rollups")(rollups_cmd)
