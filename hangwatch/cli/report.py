"""`hangwatch report`: the daily risk report as one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hangwatch.cli.common import console, fail, settings, time_range
from hangwatch.platform.timeparse import TIME_FORMS, format_local, local_zone


def report(
    since: Annotated[str, typer.Option(help=f"Start: {TIME_FORMS}. A duration counts back from --until.")]
    = "24h",
    until: Annotated[str | None, typer.Option(help="End, in the same forms; default now.", show_default=False)]
    = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.", dir_okay=False)] = Path("report.html"),
) -> None:
    """Write the hang-up risk report (branches, agents, script versions, flagged borrowers, alerts)
    for a period, from the ClickHouse store in the settings and the dashboards' own queries."""
    from hangwatch.report.data import collect
    from hangwatch.report.render import render
    from hangwatch.sinks.backends import BackendError, database_name, open_backend

    start, end = time_range(since, until)
    s = settings()
    try:
        backend = open_backend(s.clickhouse)
    except BackendError as e:
        raise fail(str(e)) from e
    try:
        data = collect(backend, s, database_name(s.clickhouse), start, end)
    except BackendError as e:
        raise fail(f"a report query failed: {e}. Run `hangwatch migrate` first if the tables are missing.") from e
    finally:
        backend.close()
    out.write_text(render(data), encoding="utf-8")
    tz = local_zone(s)
    console.print(f"wrote {out} ({format_local(start, tz)} – {format_local(end, tz)})")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
