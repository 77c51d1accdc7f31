"""Parameters that several queries share, with their valid choices (from the contract and
the settings, never restated)."""

from __future__ import annotations

from hangwatch.schemas.records import DIMENSIONS
from hangwatch.sinks.catalogue.registry import Context, Param


def _window_sizes(ctx: Context) -> tuple[int, ...]:
    return ctx.window_sizes_s


def _dimensions(ctx: Context) -> tuple[str, ...]:
    return DIMENSIONS


def window_size(default: int) -> Param:
    return Param("window_size_s", default, "window size in seconds (worker.window_sizes_s)", int, _window_sizes)


def dimension(default: str | None) -> Param:
    return Param("dimension", default, "a dimension of the rates (docs/contract.md)", str, _dimensions)


def limit(default: int) -> Param:
    return Param("limit", default, "at most this many rows", int)


VALUE = Param("value", "all", "a value of the dimension (e.g. a branch name)")
MINUTES = Param("minutes", 15, "length of the rolling window in minutes", int)
