"""`hangwatch query NAME`: run one of the named queries of sinks/queries.py and print a table."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from hangwatch.cli.common import console, fail, settings
from hangwatch.sinks import queries
from hangwatch.sinks.backends import BackendError, opened, where

MAX_CELL = 90


def query(
    name: Annotated[str | None, typer.Argument(help="Query name; omit to list them.")] = None,
    since: Annotated[str | None, typer.Option(help="Start: 15m, 2h, 7d or an ISO time (UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="End (rolling_rates): an ISO time or 10m (ago).")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many rows.")] = None,
    minutes: Annotated[int | None, typer.Option(help="rolling_rates: length of the rolling window.")] = None,
    dimension: Annotated[str | None, typer.Option(help="branch, campaign, agent_id, ... (see docs/contract.md).")]
    = None,
    value: Annotated[str | None, typer.Option(help="rates_timeseries: the dimension value.")] = None,
    window_size: Annotated[int | None, typer.Option(help="Window size in seconds: 60, 300 or 3600.")] = None,
    sql: Annotated[bool, typer.Option("--sql", help="Print the SQL instead of running it.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per row on stdout.")] = False,
) -> None:
    """Current rates, rolling rates, flagged borrowers, alerts, dead letters, freshness, ..."""
    all_queries = queries.queries()
    if name is None:
        t = Table("name", "parameters (defaults)", "what", title="hangwatch query NAME")
        for q in all_queries.values():
            t.add_row(q.name, ", ".join(f"{k}={v}" for k, v in q.defaults.items()), q.description)
        console.print(t)
        return
    if name not in all_queries:
        raise fail(f"unknown query {name!r}; known: {', '.join(all_queries)}")
    params: dict[str, Any] = {k: v for k, v in {
        "since": since, "limit": limit, "minutes": minutes, "dimension": dimension, "value": value,
        "window_size_s": window_size, "until": queries.parse_since(until) if until else None}.items()
        if v is not None}
    ch = settings().clickhouse
    try:
        with opened(ch) as (backend, db):
            text = queries.render(name, db, **params)
            if sql:
                typer.echo(text)
                return
            result = backend.query(text)
    except ValueError as e:
        raise fail(str(e)) from e
    except BackendError as e:
        raise fail(f"{e} ({where(ch)}; run `hangwatch migrate` if the tables are missing)") from e
    if as_json:
        for record in result.dicts():
            typer.echo(orjson.dumps(record, default=str).decode())
        return
    t = Table(*result.columns, title=f"{name} ({len(result.rows)} rows, times UTC)")
    for values in result.rows:
        t.add_row(*(_cell(c, v) for c, v in zip(result.columns, values, strict=True)))
    console.print(t)


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
