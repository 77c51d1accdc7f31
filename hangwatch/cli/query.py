"""`hangwatch query NAME`: run one query of the catalogue (hangwatch.sinks.catalogue, the same
SQL as the dashboards and the report) and write its rows to stdout as a table (headers in the
configured language), CSV or JSON lines; times in the configured zone; logs and errors on stderr."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, date, datetime, tzinfo
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from typer._click.core import Context as ClickContext  # the click typer bundles
from typer.core import TyperCommand

from hangwatch.cli import remedies
from hangwatch.cli.common import fail, fail_text, parse_when, settings, since_before_until, words
from hangwatch.i18n import Words
from hangwatch.platform.timeparse import TIME_FORMS, local_zone
from hangwatch.sinks import catalogue
from hangwatch.sinks.backends import BackendError, database_name, opened, where

MAX_CELL = 90


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def query(
    name: Annotated[str | None, typer.Argument(help="Query name; omit to list them with their parameters.")] = None,
    since: Annotated[str | None, typer.Option(help=f"Start of the range (default: the query's): {TIME_FORMS}.",
                                              show_default=False)] = None,
    until: Annotated[str | None, typer.Option(help="End of the range (default: open, or the latest stored "
                                                   "window for rolling queries).", show_default=False)] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many rows.")] = None,
    minutes: Annotated[int | None, typer.Option(help="Rolling queries: length of the rolling window.")] = None,
    dimension: Annotated[str | None, typer.Option(help="branch, campaign, agent_id, ... (see docs/contract.md).")]
    = None,
    value: Annotated[str | None, typer.Option(help="rates_timeseries: the dimension value.")] = None,
    window_size: Annotated[int | None, typer.Option(help="Window size in seconds (worker.window_sizes_s).")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Any other parameter as NAME=VALUE "
                                                                          "(see the list).")] = None,
    sql: Annotated[bool, typer.Option("--sql", help="Print the SQL instead of running it.")] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="table (headers in the configured language), csv "
                                                         "or json (one object per line), on stdout.")]
    = Format.table,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """Current rates, rolling rates, flagged borrowers, alerts, dead letters, freshness, and every panel's query.

    Also: `hangwatch query compare` (is a difference between two groups, or before and after a rollout, real?)
    and `hangwatch query best-times` (when to call each segment); see their --help."""
    if name is None:
        _list()
        return
    s = settings()
    try:
        q = catalogue.get(name)
        params = _params(param or []) | {k: v for k, v in {
            "limit": limit, "minutes": minutes, "dimension": dimension, "value": value,
            "window_size_s": window_size}.items() if v is not None}
        frame = _frame(q, since, until)
        ctx = catalogue.Context.of(s, frame, database_name(s.clickhouse))
        text = catalogue.render(name, ctx, **params)
    except catalogue.QueryError as e:
        raise fail(str(e), code=2) from e
    if sql:
        typer.echo(text)
        return
    try:
        with opened(s.clickhouse) as (backend, _):
            result = backend.query(text)
    except BackendError as e:
        raise fail_text("error.store", error=e, where=where(s.clickhouse)) from e
    tz = local_zone(s)
    if as_json or fmt is Format.json:
        for record in result.dicts():
            typer.echo(orjson.dumps({k: _plain(v, tz) for k, v in record.items()}, default=str).decode())
    elif fmt is Format.csv:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(result.columns)
        out.writerows([_plain(v, tz) for v in row] for row in result.rows)
    else:
        w = words()
        title = w.text("cli.query_title", name=name, n=len(result.rows), tz=s.timezone)
        headers = [header(w, c) for c in result.columns]
        cells = [[_cell(c, v, tz) for c, v in zip(result.columns, values, strict=True)] for values in result.rows]
        if len(cells) > RICH_TABLE_ROWS:
            _text_table(title, headers, cells)
            return
        t = Table(*headers, title=title)
        for row in cells:
            t.add_row(*row)
        Console(soft_wrap=False).print(t)  # stdout: `> file` keeps the table


# Above this many rows a table is printed as plain aligned text: rich lays out every cell of
# every row (minutes for a 90-day series of 130,000 rows), plain text takes one pass.
RICH_TABLE_ROWS = 2000


def _text_table(title: str, headers: list[str], cells: list[list[str]]) -> None:
    # Terminal cells, not characters: a Chinese header is two cells wide per character.
    widths = [max([cell_len(h), *(cell_len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(v + " " * (n - cell_len(v)) for v, n in zip(values, widths, strict=True)).rstrip()

    lines = [title, line(headers), "  ".join("-" * n for n in widths), *(line(r) for r in cells)]
    sys.stdout.write("\n".join(lines) + "\n")


def header(w: Words, column: str) -> str:
    """A column's heading in the reader's language: a glossary term or dimension name, else as named."""
    key = column.replace("-", "_").replace(" ", "_")
    if key in w.glossary.terms:
        return w.term(key)
    return w.name("dimension", column)


def _plain(v: Any, tz: tzinfo) -> Any:
    """CSV and JSON values: local times with their offset (ISO 8601), lists as lists."""
    if isinstance(v, datetime):
        return v.astimezone(tz).isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return v


def _list() -> None:
    t = Table("name", "parameters (defaults; choices)", "range", "what", title="hangwatch query NAME")
    ctx = catalogue.Context.of(settings(), catalogue.FixedFrame())
    for q in sorted(catalogue.catalogue().values(), key=lambda q: q.name):
        parts = [f"{p.name}={p.default}" + (f" ({', '.join(map(str, p.choices(ctx)))})" if p.choices else "")
                 for p in q.params]
        rng = {"range": f"--since {q.since or '(all)'}", "end": "--until", "": ""}[q.time]
        t.add_row(q.name, "\n".join(parts), rng, q.description)
    t.add_row("compare", "--by --a --b | --rollout --days; --filter", "--since 14d",
              "Is a difference real? Two groups or before/after a rollout, with intervals, p-values, sample sizes "
              "and a stratified estimate (hangwatch query compare --help).")
    t.add_row("best-times", "--segment; --filter", "--since 28d",
              "The best local weekday x hour slots to call per segment, with the minimum sample "
              "(hangwatch query best-times --help).")
    Console(soft_wrap=False).print(t)  # the list is data too: stdout


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, eq, val = pair.partition("=")
        if not eq or not key.strip():
            raise catalogue.QueryError(f"--param takes NAME=VALUE, got {pair!r}")
        out[key.strip().replace("-", "_")] = val.strip()
    return out


def _frame(q: catalogue.Query, since: str | None, until: str | None) -> catalogue.FixedFrame:
    """The query's time range from --since/--until; options the query has no use for are errors."""
    if since is not None and q.time != "range":
        raise catalogue.QueryError(f"query {q.name!r} takes no --since" + (" (only --until)" if q.time else ""))
    if until is not None and not q.time:
        raise catalogue.QueryError(f"query {q.name!r} takes no time range")
    now = datetime.now(tz=UTC)
    end = parse_when(until, now=now) if until else None
    start_text = since or (q.since if q.time == "range" else None)
    start = parse_when(start_text, now=now, base=end) if start_text else None
    if start and end and start >= end:
        raise since_before_until(start, end)
    step = catalogue.step_for(start, end or now) if start else 300
    return catalogue.FixedFrame(start, end, step)


def _cell(column: str, v: Any, tz: tzinfo) -> str:
    if v is None:
        return "-"
    if isinstance(v, datetime):
        return v.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, date):
        return v.isoformat()
    if column == "evidence" and isinstance(v, str):
        return _evidence(v)
    if isinstance(v, list):
        v = ", ".join(map(str, v))
    text = str(v)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _evidence(raw: str) -> str:
    """A flag's evidence (JSON list of calls) as one readable line per call."""
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:MAX_CELL]
    lines = [f"{i.get('occurred_at', '')[:16]} {i.get('outcome', '')} {i.get('hangup_stage') or ''} "
             f"{i.get('agent_id') or i.get('channel', '')}".strip() for i in items[:5]]
    if len(items) > 5:
        lines.append(f"… {len(items) - 5} more")
    return "\n".join(lines)


class _QueryCommand(TyperCommand):
    """`hangwatch query NAME` runs a catalogue query; `hangwatch query compare` and `hangwatch
    query best-times` are commands of their own (hangwatch.cli.remedies) with their own options."""

    def make_context(self, info_name: str | None, args: list[str], parent: ClickContext | None = None,
                     **extra: Any) -> ClickContext:
        subcommands = remedies.commands()
        if args and args[0] in subcommands:
            command = typer.main.get_command(subcommands[args[0]])
            return command.make_context(f"{info_name} {args[0]}", args[1:], parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


def register(app: typer.Typer) -> None:
    app.command("query", cls=_QueryCommand)(query)
