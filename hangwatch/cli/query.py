"""`hangwatch query NAME`: run one query of the catalogue (hangwatch.sinks.catalogue, the same
SQL as the dashboards and the report) and print a table."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from hangwatch.cli.common import console, fail, parse_when, settings
from hangwatch.platform.timeparse import TIME_FORMS
from hangwatch.sinks import catalogue
from hangwatch.sinks.backends import BackendError, database_name, opened, where

MAX_CELL = 90


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
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per row on stdout.")] = False,
) -> None:
    """Current rates, rolling rates, flagged borrowers, alerts, dead letters, freshness, and every panel's query."""
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
        raise fail(f"{e} ({where(s.clickhouse)}; run `hangwatch migrate` if the tables are missing)") from e
    if as_json:
        for record in result.dicts():
            typer.echo(orjson.dumps(record, default=str).decode())
        return
    t = Table(*result.columns, title=f"{name} ({len(result.rows)} rows, times UTC)")
    for values in result.rows:
        t.add_row(*(_cell(c, v) for c, v in zip(result.columns, values, strict=True)))
    console.print(t)


def _list() -> None:
    t = Table("name", "parameters (defaults; choices)", "range", "what", title="hangwatch query NAME")
    ctx = catalogue.Context.of(settings(), catalogue.FixedFrame())
    for q in sorted(catalogue.catalogue().values(), key=lambda q: q.name):
        parts = [f"{p.name}={p.default}" + (f" ({', '.join(map(str, p.choices(ctx)))})" if p.choices else "")
                 for p in q.params]
        rng = {"range": f"--since {q.since or '(all)'}", "end": "--until", "": ""}[q.time]
        t.add_row(q.name, "\n".join(parts), rng, q.description)
    console.print(t)


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
        raise catalogue.QueryError(f"--since ({start:%Y-%m-%d %H:%M} UTC) must be before --until "
                                   f"({end:%Y-%m-%d %H:%M} UTC)")
    step = catalogue.step_for(start, end or now) if start else 300
    return catalogue.FixedFrame(start, end, step)


def _cell(column: str, v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
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


def register(app: typer.Typer) -> None:
    app.command("query")(query)
