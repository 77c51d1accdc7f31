"""`hangwatch export flags`: the borrower flag review / re-dial list as XLSX or CSV, in the
chosen language, times in the configured zone (hangwatch.exports)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hangwatch.cli.common import console, fail_text, settings, time_range, words
from hangwatch.i18n import Words
from hangwatch.platform.timeparse import TIME_FORMS, format_local, local_zone

if TYPE_CHECKING:
    from hangwatch.platform.settings import Settings
    from hangwatch.sinks.backends import Backend

export_app = typer.Typer(help="Files for people: the flag review / re-dial list.", no_args_is_help=True)


@export_app.command("flags")
def flags(
    out: Annotated[Path, typer.Option("--out", "-o", help="flags.xlsx or flags.csv (UTF-8 with BOM).",
                                      dir_okay=False)],
    since: Annotated[str, typer.Option(help=f"Last call at or after: {TIME_FORMS}.")] = "24h",
    until: Annotated[str | None, typer.Option(help="Last call before; default now.", show_default=False)] = None,
    lang: Annotated[str | None, typer.Option("--lang", help="zh-CN or en (default: the language setting).",
                                             show_default=False)] = None,
    all_flags: Annotated[bool, typer.Option("--all", help="Resolved flags too (default: open ones).")] = False,
) -> None:
    """Write the flagged borrowers with full pseudonymous ids, rule, status, number of calls, last
    call (local time), the explanation in the chosen language and the evidence as columns."""
    from hangwatch.exports import FORMATS, review_list, write
    from hangwatch.sinks import catalogue
    from hangwatch.sinks.backends import BackendError, database_name, opened, where
    from hangwatch.streams.core.rules_config import RulesConfigError, load_rules

    w = words(lang)
    if out.suffix.lower() not in FORMATS:
        raise fail_text("error.out_format", 2, path=out)
    start, end = time_range(since, until)
    s = settings()
    tz = local_zone(s)
    ctx = catalogue.Context.of(s, catalogue.FixedFrame(start, end), database_name(s.clickhouse))
    sql = catalogue.render("flag_review_list", ctx, status="all" if all_flags else "open")
    try:
        with opened(s.clickhouse) as (backend, _):
            rows = backend.query(sql).dicts()
            slots = _best_slots(w, backend, s, database_name(s.clickhouse), rows, end)
    except BackendError as e:
        raise fail_text("error.store", error=e, where=where(s.clickhouse)) from e
    try:
        rules = load_rules(s.worker.rules_file, s.timezone)
    except RulesConfigError:
        rules = None  # explanations fall back to the stored sentence
    period = {"start": format_local(start, tz), "end": format_local(end, tz)}
    title = w.text("export.info", **period, tz=s.timezone, n=len(rows),
                   rules=rules.fingerprint if rules else "-")
    try:
        write(review_list(w, rows, rules, tz, title, slots), out)
    except OSError as e:
        raise fail_text("error.out_dir", path=out, error=e.strerror or e) from e
    console.print(w.text("cli.wrote_export", path=out, n=len(rows), **period), soft_wrap=True)


def _best_slots(w: Words, backend: Backend, s: Settings, db: str, rows: list[dict[str, Any]],
                end: datetime) -> dict[str, str]:
    """Borrower -> the best slots of their credit grade over the analytics.best_time_days before
    the end (docs/analytics.md, "Next action on a flag")."""
    from hangwatch.report import remedies

    start = end - timedelta(days=s.analytics.best_time_days)
    best = remedies.best_times(backend, s, db, "credit_grade", start, end)
    segments = remedies.borrower_segments(backend, s, db, (str(r["borrower_id"]) for r in rows))
    return remedies.best_slot_by_borrower(w, segments, best, rows)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
