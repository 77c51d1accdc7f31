"""The catalogue itself: named queries, their parameters with valid choices, and rendering.

A query is a function (ctx, **params) -> SQL registered with `@query`. Rendering checks every
parameter against its declared choices first, so a misspelt dimension or an unconfigured
window size is an error that lists what is valid, never an empty answer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hangwatch.sinks.catalogue.frame import Frame, FrameError
from hangwatch.sinks.sql import ident

if TYPE_CHECKING:
    from hangwatch.platform.settings import Settings


class QueryError(ValueError):
    """A query name or parameter value the catalogue does not have; the message lists the valid ones."""


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    """Everything a query needs besides its parameters: the database, the frame (times,
    filters) and the settings that queries restate (zone, spike sample size, grace, windows)."""

    db: str
    frame: Frame
    tz: str = "Asia/Shanghai"
    window_sizes_s: tuple[int, ...] = (60, 300, 3600)
    min_connected: int = 30
    grace_s: int = 600
    # What people see for a code, per dimension (branch -> {"shanghai-pudong": "上海浦东"}): the
    # app's glossary in the chosen language; queries fall back to the code itself.
    display_names: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, settings: Settings, frame: Frame, db: str | None = None) -> Context:
        from hangwatch.platform.timeparse import local_zone_name

        return cls(db=ident(db or settings.clickhouse.database), frame=frame, tz=local_zone_name(settings),
                   window_sizes_s=tuple(settings.worker.window_sizes_s),
                   min_connected=settings.alerts.min_connected, grace_s=settings.worker.grace_s)


Choices = Callable[[Context], Sequence[Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class Param:
    name: str
    default: Any
    help: str
    kind: type = str  # str or int: CLI values arrive as text
    choices: Choices | None = None

    def check(self, value: Any, ctx: Context, query: str) -> Any:
        if self.kind is int and not isinstance(value, int):
            try:
                value = int(str(value))
            except ValueError:
                raise QueryError(f"{query}: {self.name} must be a whole number, got {value!r}") from None
        if self.choices is not None:
            valid = list(self.choices(ctx))
            if value not in valid:
                raise QueryError(f"{query}: {self.name} {value!r} is not one of {', '.join(map(str, valid))}")
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class Query:
    name: str
    description: str
    build: Callable[..., str]
    params: tuple[Param, ...]
    # The time range the query reads from its frame: "range" (since..until), "end" (until
    # only, e.g. a rolling window ending there), or "" (no time range).
    time: str = ""
    since: str | None = None  # the CLI's default start, for time == "range"

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}


_CATALOGUE: dict[str, Query] = {}


def query(name: str, description: str, *params: Param, time: str = "",
          since: str | None = None) -> Callable[[Callable[..., str]], Callable[..., str]]:
    def register(build: Callable[..., str]) -> Callable[..., str]:
        if name in _CATALOGUE:
            raise RuntimeError(f"two catalogue queries are named {name!r}")
        _CATALOGUE[name] = Query(name, description, build, params, time, since)
        return build

    return register


def catalogue() -> dict[str, Query]:
    return dict(_CATALOGUE)


def get(name: str) -> Query:
    try:
        return _CATALOGUE[name]
    except KeyError:
        raise QueryError(f"unknown query {name!r}; known: {', '.join(sorted(_CATALOGUE))}") from None


def render(name: str, ctx: Context, **values: Any) -> str:
    """The SQL of query `name`; None values take the parameter's default."""
    q = get(name)
    known = {p.name: p for p in q.params}
    unknown = sorted(set(values) - set(known))
    if unknown:
        takes = ", ".join(known) or "no parameters"
        raise QueryError(f"query {name!r} has no parameter {', '.join(unknown)}; it takes {takes}")
    args = {p.name: p.default if values.get(p.name) is None else p.check(values[p.name], ctx, name)
            for p in q.params}
    try:
        return q.build(ctx, **args)
    except FrameError as e:
        raise QueryError(f"{name}: {e}") from e


def per_interval(ctx: Context, column: str, value: str, source: str, where: str) -> str:
    """A time series: `value` (an aggregate with its alias) per interval of `column`."""
    return f"""
SELECT
  {ctx.frame.bucket(column)} AS time,
  {value}
FROM {source}
WHERE {where}
GROUP BY time
ORDER BY time
""".strip()
