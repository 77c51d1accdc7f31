"""`hangwatch report`: the risk report for a period as one self-contained HTML file, in the
chosen language, compared with the previous period of the same length."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hangwatch.cli.common import console, fail_for, fail_text, settings, time_range, words
from hangwatch.platform.timeparse import TIME_FORMS, format_local, local_zone


def report(
    since: Annotated[str, typer.Option(help=f"Start: {TIME_FORMS}. A duration counts back from --until.")]
    = "24h",
    until: Annotated[str | None, typer.Option(help="End, in the same forms; default now.", show_default=False)]
    = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.", dir_okay=False)] = Path("report.html"),
    lang: Annotated[str | None, typer.Option("--lang", help="zh-CN or en (default: the language setting).",
                                             show_default=False)] = None,
) -> None:
    """Write the hang-up risk report (branches, agents, script versions, pre-notification, flag
    trend, flagged borrowers, alerts, and the change from the previous period) from the
    ClickHouse store in the settings and the dashboards' own queries."""
    from hangwatch.report.data import collect
    from hangwatch.report.render import render
    from hangwatch.sinks.backends import BackendError, open_backend
    from hangwatch.sinks.migrate import shown_database

    w = words(lang)
    start, end = time_range(since, until)
    if not out.parent.is_dir():  # before any query runs: a wrong --out costs nothing
        raise fail_text("error.out_dir", path=out, error=f"{out.parent} is not a directory")
    s = settings()
    try:
        backend = open_backend(s.clickhouse)
    except BackendError as e:
        raise fail_for(e) from e
    try:
        # Borrower ids masked unless privacy.show_borrower_ids, as on the dashboards.
        data = collect(backend, s, shown_database(s), start, end)
    except BackendError as e:
        raise fail_text("error.report_query", error=e) from e
    finally:
        backend.close()
    try:
        out.write_text(render(data, w), encoding="utf-8")
    except OSError as e:
        raise fail_text("error.out_dir", path=out, error=e.strerror or e) from e
    tz = local_zone(s)
    console.print(w.text("cli.wrote_report", path=out, start=format_local(start, tz), end=format_local(end, tz)),
                  soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
