"""The one query catalogue: every SQL statement a person sees, whether through `hangwatch
query`, the risk report, a Grafana panel or an alert rule, in one place so that two views of
the same number can never disagree.

    ctx = Context.of(settings, FixedFrame(start, end))   # or MacroFrame() for Grafana
    sql = render("rolling_rates", ctx, dimension="branch", minutes=30)
    result = run(backend, "rolling_rates", ctx, dimension="branch")

Each query declares its parameters and their valid choices (catalogue()[name].params); a
wrong name or value raises QueryError listing what is valid. Times and dashboard filters
come from the context's frame (frame.py), so one text serves Grafana's macros and concrete
times alike.

Rules every query follows:
- exact before merges: window counts (expr.current_cells) and versioned rows (flags, alerts,
  dead letters) and the rollups (rollup.rollup_rows) with argMax(..., version) grouped by
  their key, never FINAL; raw events only for one borrower (borrower_calls, LIMIT 1 BY);
- rates are derived from summed counts, never averaged; outcome sets come from the contract;
- one SQL for ClickHouse 18.16 and current versions alike, for Grafana too (no window
  functions, toStartOfInterval or $__timeInterval, JSONExtract*, WITH FILL, tuples as
  argMax's second argument; aliases never shadow a column inside an aggregate);
  values are literals (sinks.sql.literal), times toDateTime(epoch, 'UTC').

Modules: frame (time and filter abstraction), registry (Query, Param, Context, render),
params (shared parameters), expr (building blocks), rollup (reading a range from the
rollups), and the queries by subject: rates (the stream's window cells), events (the live
dashboard's rates and breakdowns, from the rollups), flags, health, review (the review list,
the report's comparison and flag trend), borrowers (one borrower's calls), remedies
(comparing groups and periods, the best time to call: docs/analytics.md).
"""

from __future__ import annotations

from typing import Any

from hangwatch.sinks.backends.base import Backend, Result
from hangwatch.sinks.catalogue import (  # noqa: F401  (they register)
    borrowers,
    events,
    flags,
    health,
    rates,
    remedies,
    review,
)
from hangwatch.sinks.catalogue.frame import FixedFrame, Frame, FrameError, MacroFrame, step_for
from hangwatch.sinks.catalogue.registry import Context, Param, Query, QueryError, catalogue, get, render

__all__ = ["Context", "FixedFrame", "Frame", "FrameError", "MacroFrame", "Param", "Query", "QueryError",
           "catalogue", "get", "render", "run", "step_for"]


def run(backend: Backend, name: str, ctx: Context, **params: Any) -> Result:
    return backend.query(render(name, ctx, **params))
