"""`hangwatch report`: the daily risk report as one self-contained HTML file."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from hangwatch.cli.common import console, fail, settings
from hangwatch.grafana.constants import SPIKE_MIN_CONNECTED

_DURATION = re.compile(r"^(\d+)([mhd])$")


def parse_when(text: str, now: datetime) -> datetime:
    """`24h`, `90m`, `7d` (that long before now) or an ISO 8601 time (UTC if it has no offset)."""
    m = _DURATION.match(text.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        return now - timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: n})
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError as e:
        raise ValueError(f"{text!r} is neither a duration like 24h / 90m / 7d nor an ISO time like "
                         "2026-05-01T00:00+08:00") from e
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def report(
    since: Annotated[str, typer.Option(help="Start: a duration before --until (24h, 7d) or an ISO time.")] = "24h",
    until: Annotated[str | None, typer.Option(help="End: an ISO time; default now.", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.", dir_okay=False)] = Path("report.html"),
) -> None:
    """Write the hang-up risk report (branches, agents, script versions, flagged borrowers, alerts)
    for a period, from the ClickHouse store in the settings and the dashboards' own SQL."""
    from hangwatch.report.data import collect
    from hangwatch.report.render import render
    from hangwatch.sinks.backends import BackendError, database_name, open_backend

    now = datetime.now(tz=UTC)
    try:
        end = parse_when(until, now) if until else now
        start = parse_when(since, end)
    except ValueError as e:
        raise fail(str(e), code=2) from e
    if start >= end:
        raise fail(f"--since ({start.isoformat()}) must be before --until ({end.isoformat()})", code=2)
    s = settings()
    try:
        backend = open_backend(s.clickhouse)
    except BackendError as e:
        raise fail(str(e)) from e
    try:
        data = collect(backend, database_name(s.clickhouse), start, end)
    except BackendError as e:
        raise fail(f"a report query failed: {e}. Run `hangwatch migrate` first if the tables are missing.") from e
    finally:
        backend.close()
    out.write_text(render(data, SPIKE_MIN_CONNECTED), encoding="utf-8")
    console.print(f"wrote {out} ({start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC)")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
