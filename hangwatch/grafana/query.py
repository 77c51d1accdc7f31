"""The ClickHouse query type for grafana-foundation-sdk, which ships none: a small custom
Dataquery, the SDK's documented extension point. Its JSON is the target shape the plugin's
backend reads (docs/dashboards.md): rawSql, an integer format, editorType "sql"."""

from __future__ import annotations

import enum
from typing import Any, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants

from hangwatch.grafana.constants import DATASOURCE_REF, PLUGIN_ID, PLUGIN_VERSION


class Format(enum.IntEnum):
    """The plugin's result formats; JSON carries the integer (a string is silently wrong)."""

    TIME_SERIES = 0
    TABLE = 1
    LOGS = 2
    TRACES = 3


class ClickHouseQuery(cogvariants.Dataquery):
    def __init__(self, ref_id: str = "A", raw_sql: str = "", fmt: Format = Format.TABLE, hide: bool = False) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format = fmt
        self.hide = hide

    @property
    def query_type(self) -> str:
        return "timeseries" if self.format is Format.TIME_SERIES else "table"

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": dict(DATASOURCE_REF),
            "editorType": "sql",
            "rawSql": self.raw_sql,
            "format": int(self.format),
            "queryType": self.query_type,
            "pluginVersion": PLUGIN_VERSION,
        }
        if self.hide:
            payload["hide"] = True
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(ref_id=data.get("refId", "A"), raw_sql=data.get("rawSql", ""),
                   fmt=Format(int(data.get("format", Format.TABLE))), hide=bool(data.get("hide", False)))


class ClickHouseQueryBuilder(cogbuilder.Builder[ClickHouseQuery]):
    def __init__(self, raw_sql: str, fmt: Format, ref_id: str = "A") -> None:
        self._internal = ClickHouseQuery(ref_id=ref_id, raw_sql=raw_sql, fmt=fmt)

    def build(self) -> ClickHouseQuery:
        return self._internal


def register() -> None:
    """Let the SDK decode our targets back (Dashboard.from_json) instead of an unknown bag."""
    cogruntime.Runtime().register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=PLUGIN_ID, from_json_hook=ClickHouseQuery.from_json))


register()
