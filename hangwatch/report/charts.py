"""Charts for the report as base64 PNG (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless servers and CI have no display

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

_BLUE, _ORANGE, _GREY = "#3274d9", "#ff9830", "#8e8e8e"


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def rates_over_time(rows: Sequence[dict[str, Any]], tz: str, labels: dict[str, str] | None = None) -> str | None:
    """The four rates per interval; `labels`: the legend for each rate column (column -> text)."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(10, 3.2))
    times = [r["time"] for r in rows]
    for col, color in (("hang-up rate", "#e02f44"), ("decline rate", _ORANGE), ("refusal rate", "#8f3bb8"),
                       ("contact rate", _BLUE)):
        ax.plot(times, [_num(r.get(col)) for r in rows], label=(labels or {}).get(col, col), color=color,
                linewidth=1.6)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", ncols=4, frameon=False, bbox_to_anchor=(0.5, 1.15))
    # The report speaks local time (its header says so); matplotlib would label in UTC.
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=tz))
    fig.autofmt_xdate()
    return _png(fig)


def rate_bars(labels: Sequence[str], rates: Sequence[float | None], samples: Sequence[int], title: str,
              missing: str = "n/a") -> str | None:
    """Horizontal bars of a rate with the sample size (connected calls) printed beside each."""
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.38 * len(labels) + 0.9))
    y = list(range(len(labels)))[::-1]
    values = [_num(r) for r in rates]
    ax.barh(y, values, color=_BLUE, height=0.6)
    for yi, v, n in zip(y, values, samples, strict=True):
        text = missing if v != v else f"{v:.1%}"  # NaN: no connected call
        ax.text((0 if v != v else v) + 0.005, yi, f"{text}  (n={n})", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    top = max([v for v in values if v == v] or [0.0])
    ax.set_xlim(0, min(1.0, top * 1.35 + 0.05))
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def stage_bars(rows: Sequence[dict[str, Any]], names: Sequence[str] | None = None,
               legend: tuple[str, str] = ("hung up", "refused")) -> str | None:
    """Hang-ups (and refusals) per stage; `names`: the stages' display names."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 3))
    stages = list(names) if names else [str(r["stage"]) for r in rows]
    hung = [int(r["hung_up"]) for r in rows]
    refused = [int(r["refused"]) for r in rows]
    ax.bar(stages, hung, label=legend[0], color=_BLUE)
    if any(refused):  # refusals usually carry no stage; no empty legend entry then
        ax.bar(stages, refused, bottom=hung, label=legend[1], color=_ORANGE)
    ax.legend(frameon=False)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def heatmap(rows: Sequence[dict[str, Any]], tz: str, names: Sequence[str] | None = None,
            xlabel: str | None = None) -> str | None:
    """Branch (rows) x local hour (columns) hang-up rate; blank where nobody was connected."""
    if not rows:
        return None
    hours = [f"{h:02d}" for h in range(24)]
    matrix = [[_num(r.get(h)) for h in hours] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(rows) + 1.2))
    im = ax.imshow(matrix, aspect="auto", cmap="RdYlGn_r", vmin=0, vmax=max(0.5, max(
        (v for row in matrix for v in row if v == v), default=0.5)))
    ax.set_xticks(range(24), hours, fontsize=8)
    ax.set_yticks(range(len(rows)), list(names) if names else [str(r["branch"]) for r in rows], fontsize=8)
    ax.set_xlabel(xlabel or f"hour of day ({tz})", fontsize=8)
    fig.colorbar(im, ax=ax, format=PercentFormatter(1.0), fraction=0.03)
    return _png(fig)


def flag_trend(rows: Sequence[dict[str, Any]], tz: str, names: dict[str, str]) -> str | None:
    """Flags raised per interval, stacked by rule (`names`: rule id -> display name)."""
    if not rows:
        return None
    times = sorted({r["time"] for r in rows})
    rules = sorted({str(r["rule_id"]) for r in rows})
    fig, ax = plt.subplots(figsize=(10, 2.8))
    bottom = [0] * len(times)
    width = (times[1] - times[0]) * 0.8 if len(times) > 1 else 0.002
    for rule, color in zip(rules, (_BLUE, _ORANGE, "#8f3bb8", "#e02f44", _GREY), strict=False):
        counts = {r["time"]: int(r["raised"]) for r in rows if str(r["rule_id"]) == rule}
        values = [counts.get(t, 0) for t in times]
        ax.bar(times, values, bottom=bottom, width=width, label=names.get(rule, rule), color=color)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.legend(frameon=False, loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=tz))
    fig.autofmt_xdate()
    return _png(fig)
