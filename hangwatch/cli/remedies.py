"""`hangwatch query compare` and `hangwatch query best-times` (issue 16, docs/analytics.md):
intervention impact between two groups or around a rollout date, and the best local weekday x
hour to call per segment, judged by hangwatch.analytics.stats over the rollups' counts
(hangwatch.report.remedies). A table in the configured language, or JSON; one-line errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from hangwatch.cli.common import fail, fail_for, fail_text, parse_when, settings, time_range, words
from hangwatch.i18n import Words
from hangwatch.platform.timeparse import TIME_FORMS, format_local, local_zone
from hangwatch.report import remedies
from hangwatch.report.remedies import pct, slot_label
from hangwatch.sinks.backends import BackendError, database_name, opened, where
from hangwatch.sinks.catalogue import QueryError
from hangwatch.sinks.catalogue.remedies import FACTORS, FILTERS, SEGMENTS


def _filters(pairs: list[str] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pair in pairs or []:
        key, eq, val = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in FILTERS or not val.strip():
            raise fail(f"--filter takes NAME=VALUE[,VALUE...] with NAME one of {', '.join(FILTERS)}; got {pair!r}", 2)
        out.setdefault(key, []).extend(v.strip() for v in val.split(",") if v.strip())
    return out


def _values(text: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (text or "").split(",") if v.strip())


def comparison_table(w: Words, c: remedies.Comparison, tz: Any) -> list[Table]:
    """The comparison as the CLI prints it: the rates, then the stratified estimate."""
    v = remedies.view(w, c, tz)
    main = Table(*(v.headers[k] for k in remedies.MAIN_COLUMNS), title=f"{v.title}\na = {v.a}\nb = {v.b}")
    for row in v.rows:
        main.add_row(*(row[k] for k in remedies.MAIN_COLUMNS))
    strat = Table(*(v.headers[k] for k in remedies.STRATIFIED_COLUMNS), title=v.stratified_title)
    for row in v.rows:
        strat.add_row(*(row[k] for k in remedies.STRATIFIED_COLUMNS))
    return [main, strat]


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    s = settings()
    try:
        with opened(s.clickhouse) as (backend, _):
            return fn(backend, s, database_name(s.clickhouse), *args, **kwargs)
    except (remedies.RemedyError, QueryError) as e:
        raise fail(str(e), 1 if isinstance(e, remedies.RemedyError) else 2) from e
    except BackendError as e:
        if type(e).__name__ == "Unavailable":
            raise fail_for(e) from e
        raise fail_text("error.store", error=e, where=where(s.clickhouse)) from e


def _json(data: Any) -> None:
    typer.echo(orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2).decode())


def compare(
    by: Annotated[str | None, typer.Option("--by", help=f"The factor of the two groups: {', '.join(FACTORS)}.",
                                           show_default=False)] = None,
    a: Annotated[str | None, typer.Option("--a", help="The reference group: comma-separated values of the factor "
                                                      "(pre_notified: false, channel: robot by default).",
                                          show_default=False)] = None,
    b: Annotated[str | None, typer.Option("--b", help="The group judged against it (pre_notified: true, channel: "
                                                      "human by default). Credit-grade tiers: --a AAA,AA --b B,C.",
                                          show_default=False)] = None,
    rollout: Annotated[str | None, typer.Option(help="Before/after mode: the rollout time (e.g. 2026-12-01); compares "
                                                     "the calls of --days before it with those after it.",
                                                show_default=False)] = None,
    days: Annotated[int | None, typer.Option(help="Days on either side of --rollout (analytics.rollout_days).",
                                             show_default=False)] = None,
    since: Annotated[str, typer.Option(help=f"Groups mode: start of the range ({TIME_FORMS}).")] = "14d",
    until: Annotated[str | None, typer.Option(help="Groups mode: end of the range (default now).",
                                              show_default=False)] = None,
    filter_: Annotated[list[str] | None, typer.Option("--filter", help=f"Only these calls: NAME=VALUE[,VALUE], NAME "
                                                                       f"one of {', '.join(FILTERS)}; repeatable.",
                                                      show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of the tables.")] = False,
) -> None:
    """Is a difference real? Two groups (--by, --a, --b) or the periods around a rollout (--rollout) on hang-up,
    decline and contact rate: counts, difference b - a, its confidence interval (Newcombe), the p-value of the
    two-proportion z test, the units per group needed to detect a change of analytics.detect_relative_change, and
    a Cochran-Mantel-Haenszel estimate stratified by credit grade x campaign; for a rollout, a warning when that
    mix shifted between the periods.

    Calls of one borrower are not independent: every count is divided by
    the rate's design effect, Kish's approximation deff = 1 + (m - 1) x ICC
    with m the size-weighted mean calls per borrower and ICC the
    intra-borrower correlation, both estimated from the borrowers' calls in
    the range (or the setting analytics.design_effect; docs/analytics.md)."""
    s = settings()
    filters = _filters(filter_)
    tz = local_zone(s)
    if rollout is not None:
        if by is not None or a is not None or b is not None:
            raise fail("--rollout compares periods: give either --rollout or --by/--a/--b", 2)
        at = parse_when(rollout)
        result = _run(remedies.compare_rollout, at, days or s.analytics.rollout_days, datetime.now(tz=UTC), filters)
    else:
        if by is None:
            raise fail("give --by FACTOR with --a/--b (two groups) or --rollout DATE (before/after); "
                       "see hangwatch query compare --help", 2)
        if by not in FACTORS:
            raise fail(f"--by {by!r} is not one of {', '.join(FACTORS)}", 2)
        ga, gb = _values(a), _values(b)
        if not ga and not gb and by in remedies.NATURAL_GROUPS:
            ga, gb = remedies.NATURAL_GROUPS[by]
        if not ga or not gb:
            raise fail(f"--by {by} needs --a and --b (comma-separated values of {by})", 2)
        start, end = time_range(since, until)
        result = _run(remedies.compare_groups, by, ga, gb, start, end, filters)
    if as_json:
        _json(result.as_dict())
        return
    w = words()
    out = Console(soft_wrap=False)
    for t in comparison_table(w, result, tz):
        out.print(t)
    for line in remedies.view(w, result, tz).notes:
        out.print(line, soft_wrap=True)


def best_times(
    segment: Annotated[str, typer.Option(help=f"Judge the slots per value of: {', '.join(SEGMENTS)}.")] = "all",
    since: Annotated[str | None, typer.Option(help=f"Start of the range ({TIME_FORMS}; default "
                                                   "analytics.best_time_days before --until).",
                                              show_default=False)] = None,
    until: Annotated[str | None, typer.Option(help="End of the range (default now).", show_default=False)] = None,
    filter_: Annotated[list[str] | None, typer.Option("--filter", help=f"Only these calls: NAME=VALUE[,VALUE], NAME "
                                                                       f"one of {', '.join(FILTERS)}; repeatable.",
                                                      show_default=False)] = None,
    all_slots: Annotated[bool, typer.Option("--all-slots", help="List every slot with calls, not only the "
                                                                "recommended ones.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of the table.")] = False,
) -> None:
    """When to call: contact and hang-up rate per local weekday x hour (the `timezone` setting) per segment value,
    and the best slots where the data suffices: a slot is judged only with analytics.best_time_min_attempts
    attempts and analytics.best_time_min_connected connected calls, and slots are ranked by the Wilson lower
    bound of the reach rate (connected and not hung up, per attempt).

    Counts are calls, not borrowers: where few borrowers make many calls,
    raise the minimum sample by the design effect (docs/analytics.md)."""
    s = settings()
    filters = _filters(filter_)
    start, end = time_range(since or f"{s.analytics.best_time_days}d", until)
    result = _run(remedies.best_times, segment, start, end, filters)
    if as_json:
        _json([{"segment": r.segment, "value": r.value, "recommended": [
            {"slot": x.label, **{k: getattr(x, k) for k in ("weekday", "hour", "attempts", "connected", "hung_up",
                                                           "contact_rate", "hangup_rate", "reach_rate", "reach_low")}}
            for x in (r.best.slots if all_slots else r.best.recommended)], "insufficient_slots": r.best.insufficient,
            "min_attempts": r.best.min_attempts, "min_connected": r.best.min_connected} for r in result])
        return
    w = words()
    kind = "dimension" if segment == "all" else segment
    t = Table(w.name("dimension", segment), w.text("remedies.col.slot"), w.term("attempts"), w.term("contact_rate"),
              w.term("hangup_rate"), w.text("remedies.col.reach_low"),
              title=w.text("remedies.title.best_times", tz=s.timezone, start=format_local(start, local_zone(s)),
                           end=format_local(end, local_zone(s))))
    for r in result:
        for x in (r.best.slots if all_slots else r.best.recommended):
            t.add_row(w.name(kind, r.value), slot_label(w, x.weekday, x.hour), f"{x.attempts:,}",
                      pct(x.contact_rate), pct(x.hangup_rate), pct(x.reach_low))
    out = Console(soft_wrap=False)
    out.print(t)
    out.print(w.text("remedies.note.min_sample", attempts=s.analytics.best_time_min_attempts,
                     connected=s.analytics.best_time_min_connected,
                     skipped=sum(r.best.insufficient for r in result)), soft_wrap=True)


def commands() -> dict[str, typer.Typer]:
    """The subcommands of `hangwatch query`, by name (hangwatch.cli.query dispatches to them)."""
    out = {}
    for name, fn in (("compare", compare), ("best-times", best_times)):
        app = typer.Typer(add_completion=False)
        app.command(name)(fn)
        out[name] = app
    return out
