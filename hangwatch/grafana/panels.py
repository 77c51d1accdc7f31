"""Panel helpers on top of grafana-foundation-sdk's builders: every panel gets the fixed
datasource, explicit grid positions (no auto layout, so the JSON is stable and reviewable)
and ClickHouse targets."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import barchart, dashboard, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from hangwatch.grafana.constants import DATASOURCE_UID, PLUGIN_ID
from hangwatch.grafana.query import ClickHouseQueryBuilder, Format

if TYPE_CHECKING:
    from hangwatch.grafana.texts import Texts

PERCENT = "percentunit"


class _PanelBuilder(Protocol):
    def datasource(self, datasource: dm.DataSourceRef) -> Self: ...
    def grid_pos(self, grid_pos: dm.GridPos) -> Self: ...
    def with_target(self, target: Any) -> Self: ...
    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...


P = TypeVar("P", bound=_PanelBuilder)


def datasource_ref() -> dm.DataSourceRef:
    return dm.DataSourceRef(type_val=PLUGIN_ID, uid=DATASOURCE_UID)


def _setup(panel: P, title: str, description: str, pos: tuple[int, int, int, int],
           targets: list[tuple[str, Format]]) -> P:
    x, y, w, h = pos
    panel.title(title).description(description).datasource(datasource_ref())
    panel.grid_pos(dm.GridPos(h=h, w=w, x=x, y=y))
    for i, (sql, fmt) in enumerate(targets):
        panel.with_target(ClickHouseQueryBuilder(sql, fmt, ref_id=chr(ord("A") + i)))
    return panel


def _rate_thresholds(warn: float, bad: float) -> dashboard.ThresholdsConfig:
    return dashboard.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([
        dm.Threshold(value=None, color="green"), dm.Threshold(value=warn, color="orange"),
        dm.Threshold(value=bad, color="red")])


def timeseries_panel(title: str, description: str, pos: tuple[int, int, int, int],
                     targets: list[str], unit: str = PERCENT) -> timeseries.Panel:
    p = _setup(timeseries.Panel(), title, description, pos, [(s, Format.TIME_SERIES) for s in targets])
    p.unit(unit).line_width(2).fill_opacity(8).span_nulls(False)
    if unit == PERCENT:
        p.min(0)
    return p.legend(common_builders.VizLegendOptions().show_legend(True)
                    .display_mode(common.LegendDisplayMode.LIST).placement(common.LegendPlacement.BOTTOM)
                    .calcs([]))


def stat_panel(title: str, description: str, pos: tuple[int, int, int, int], sql: str, field: str,
               unit: str, thresholds: tuple[float, float] | None = None) -> stat.Panel:
    """One number from a one-row table query; `field` picks the column (several stat panels
    share one statement)."""
    p = _setup(stat.Panel(), title, description, pos, [(sql, Format.TABLE)])
    p.unit(unit).graph_mode(common.BigValueGraphMode.NONE).color_mode(common.BigValueColorMode.VALUE)
    p.reduce_options(common_builders.ReduceDataOptions().values(False).calcs(["lastNotNull"])
                     .fields(f"/^{field}$/"))
    if thresholds:
        p.thresholds(_rate_thresholds(*thresholds))
    return p


def table_panel(title: str, description: str, pos: tuple[int, int, int, int], sql: str) -> table.Panel:
    return _setup(table.Panel(), title, description, pos, [(sql, Format.TABLE)])


def barchart_panel(title: str, description: str, pos: tuple[int, int, int, int], sql: str,
                   x_field: str) -> barchart.Panel:
    p = _setup(barchart.Panel(), title, description, pos, [(sql, Format.TABLE)])
    return p.x_field(x_field).show_value(common.VisibilityMode.AUTO).stacking(common.StackingMode.NORMAL)


def rate_columns(p: table.Panel, names: list[str], warn: float = 0.2, bad: float = 0.35) -> table.Panel:
    """Show rate columns as percentages with a coloured background (green/orange/red)."""
    props = [
        dm.DynamicConfigValue(id_val="unit", value=PERCENT),
        dm.DynamicConfigValue(id_val="decimals", value=1),
        dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background", "mode": "gradient"}),
        dm.DynamicConfigValue(id_val="thresholds", value=_rate_thresholds(warn, bad).build()),
    ]
    for name in names:
        p.override_by_name(name, props)
    return p


def rate_columns_regex(p: table.Panel, regex: str, warn: float = 0.2, bad: float = 0.35) -> table.Panel:
    props = [
        dm.DynamicConfigValue(id_val="unit", value=PERCENT),
        dm.DynamicConfigValue(id_val="decimals", value=0),
        dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background", "mode": "basic"}),
        dm.DynamicConfigValue(id_val="thresholds", value=_rate_thresholds(warn, bad).build()),
    ]
    return p.override_by_regexp(regex, props)


def query_variable(name: str, label: str, sql: str) -> dashboard.QueryVariable:
    """Multi-select with All. No custom allValue: the plugin's $__conditionalAll recognises
    All only by Grafana's own `$__all` value."""
    return (dashboard.QueryVariable(name).label(label).datasource(datasource_ref()).query(sql)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True)
            .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"])))


def localize_columns(p: Any, t: Texts) -> Any:
    """Display names (legends, table headers) in the dashboard's language for the result
    columns of the panel's SQL: an override per column name; the SQL and its column names
    stay as the catalogue has them. Stat panels keep theirs (their title names the number and
    their field selector matches the column name)."""
    if isinstance(p, stat.Panel):
        return p
    sql = "\n".join(str(target.raw_sql) for target in (p.build().targets or []))
    for name, label in t.columns().items():
        if re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", sql):
            p.override_by_name(name, [dm.DynamicConfigValue(id_val="displayName", value=label)])
    return p

