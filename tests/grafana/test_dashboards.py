"""Dashboard JSON, checked offline: freshness of the committed files, the foundation SDK's
own model (a lossless round trip), a JSON Schema of the contracts in docs/dashboards.md ("Grafana's formats"), and the
structural rules (uids, datasource, formats, grid)."""

from __future__ import annotations

import json
import re
from itertools import combinations
from typing import Any

import jsonschema
import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from hangwatch.grafana import files
from hangwatch.grafana.constants import (
    DATASOURCE_UID,
    HEALTH_UID,
    LIVE_UID,
    PLUGIN_ID,
    PLUGIN_VERSION,
    REMEDIES_UID,
)

DASHBOARD_DIR = files.DEPLOY_DIR / "dashboards"
NAMES = ["hangup-risk-live", "pipeline-health", "remedies"]

# The dashboard contract of docs/dashboards.md ("Grafana's formats") as a JSON Schema (draft-07). The SDK's
# wheel ships no JSON Schema, so its model is checked by the round trip below instead.
_TARGET = {
    "type": "object",
    "required": ["refId", "datasource", "editorType", "rawSql", "format", "queryType", "pluginVersion"],
    "properties": {
        "refId": {"type": "string", "pattern": "^[A-Z]$"},
        "datasource": {"const": {"type": PLUGIN_ID, "uid": DATASOURCE_UID}},
        "editorType": {"const": "sql"},
        "rawSql": {"type": "string", "minLength": 10},
        "format": {"type": "integer", "enum": [0, 1, 2, 3]},
        "queryType": {"enum": ["timeseries", "table"]},
        "pluginVersion": {"const": PLUGIN_VERSION},
    },
}
_PANEL = {
    "type": "object",
    "required": ["id", "type", "title", "gridPos", "datasource", "targets", "fieldConfig"],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "type": {"enum": ["timeseries", "stat", "table", "barchart", "heatmap"]},
        "gridPos": {"type": "object", "required": ["x", "y", "w", "h"],
                    "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 23},
                                   "y": {"type": "integer", "minimum": 0},
                                   "w": {"type": "integer", "minimum": 1, "maximum": 24},
                                   "h": {"type": "integer", "minimum": 1}}},
        "datasource": {"const": {"type": PLUGIN_ID, "uid": DATASOURCE_UID}},
        "targets": {"type": "array", "minItems": 1, "items": _TARGET},
        "fieldConfig": {"type": "object", "required": ["defaults"]},
    },
}
SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["uid", "title", "id", "schemaVersion", "time", "timezone", "refresh", "templating", "annotations",
                 "panels"],
    "properties": {
        "uid": {"type": "string", "minLength": 8, "maxLength": 40},
        "id": {"type": "null"},
        "schemaVersion": {"const": 39},
        "time": {"type": "object", "required": ["from", "to"]},
        "refresh": {"type": "string", "pattern": "^[0-9]+[smh]$"},
        "templating": {"type": "object", "required": ["list"]},
        "annotations": {"type": "object", "required": ["list"]},
        "panels": {"type": "array", "minItems": 1, "items": _PANEL},
    },
}


def _load(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARD_DIR / f"{name}.json").read_text(encoding="utf-8"))


def test_committed_files_are_fresh() -> None:
    stale = files.stale()
    assert not stale, f"regenerate with `hangwatch grafana dashboards`: {stale}"


@pytest.mark.parametrize("name", NAMES)
def test_schema(name: str) -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(_load(name), SCHEMA, cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize("name", NAMES)
def test_sdk_model_round_trip_is_lossless(name: str) -> None:
    """Every key we write is one the SDK's Grafana 11.6 model knows (unknown keys would be
    dropped by from_json, and the comparison would fail)."""
    import hangwatch.grafana.query  # noqa: F401  (registers the ClickHouse dataquery)

    data = _load(name)
    back = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    back["id"] = data["id"]  # id: null is dropped by the SDK, and we add it back on purpose
    assert back == data


def test_uids_are_the_fixed_ones() -> None:
    assert _load("hangup-risk-live")["uid"] == LIVE_UID
    assert _load("pipeline-health")["uid"] == HEALTH_UID
    assert all(len(u) <= 40 for u in (LIVE_UID, HEALTH_UID, DATASOURCE_UID))


@pytest.mark.parametrize("name", NAMES)
def test_grid_has_no_overlaps_and_unique_ids(name: str) -> None:
    panels = _load(name)["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
    for a, b in combinations(panels, 2):
        ga, gb = a["gridPos"], b["gridPos"]
        overlap = (ga["x"] < gb["x"] + gb["w"] and gb["x"] < ga["x"] + ga["w"]
                   and ga["y"] < gb["y"] + gb["h"] and gb["y"] < ga["y"] + ga["h"])
        assert not overlap, f"{a['title']!r} overlaps {b['title']!r}"


@pytest.mark.parametrize("name", NAMES)
def test_panels_fit_their_query_format(name: str) -> None:
    for p in _load(name)["panels"]:
        assert p.get("description"), f"{p['title']}: every panel says what it shows"
        for t in p["targets"]:
            expected = 0 if p["type"] == "timeseries" else 1
            assert t["format"] == expected, p["title"]
            assert t["queryType"] == ("timeseries" if expected == 0 else "table")
            assert "$__timeFilter(" in t["rawSql"] or "$__toTime" in t["rawSql"] or "now()" in t["rawSql"], p["title"]
            if p["type"] == "timeseries":
                # Buckets from $__interval_s: the plugin's $__timeInterval is toStartOfInterval,
                # which ClickHouse 18.16 lacks (docs/dashboards.md, "Macros"). Series over
                # the rollups snap the interval to whole minutes, hours or days.
                assert ("$__interval_s) * $__interval_s" in t["rawSql"]
                        or "toUInt32($__interval_s) >= 86400" in t["rawSql"]), p["title"]
            # Macros whose expansion changed across plugin versions, or that expand to functions
            # 18.16 lacks (docs/dashboards.md, "Macros").
            for banned in ("$__timeFrom", "$__timeTo", "$__timeGroup", "$__timeInterval"):
                assert banned not in t["rawSql"]


def _english(name: str) -> dict[str, Any]:
    from hangwatch.grafana import dashboards
    from hangwatch.platform.settings import load_settings

    return dashboards.all_dashboards(load_settings().model_copy(update={"language": "en"}))[name]


def test_shipped_dashboards_are_chinese_in_the_local_zone() -> None:
    """The committed files are zh-CN (titles, panels, variables, legends) with the dashboard
    time zone of the settings; the English set differs only in its texts."""
    from hangwatch.platform.settings import load_settings
    from hangwatch.platform.timeparse import local_zone

    zone = str(local_zone(load_settings()))
    live, health = _load("hangup-risk-live"), _load("pipeline-health")
    assert (live["title"], health["title"]) == ("挂断风险 — 实时", "管道健康")
    for d in (live, health):
        assert d["timezone"] == zone == "Asia/Shanghai"
        for p in d["panels"]:
            assert re.search(r"[\u4e00-\u9fff]", p["title"] + p["description"]), p["title"]
    assert [v["label"] for v in live["templating"]["list"]] == ["分行", "活动", "渠道", "话术版本"]
    titles = {p["title"] for p in live["panels"]}
    assert {"挂断率", "拒接率", "各比率走势", "按话术版本", f"挂断率：分行 × 时段（{zone}）"} <= titles
    rates = next(p for p in live["panels"] if p["title"] == "各比率走势")
    names = {o["matcher"]["options"]: o["properties"] for o in rates["fieldConfig"]["overrides"]}
    assert names["hang-up rate"] == [{"id": "displayName", "value": "挂断率"}]
    en = _english("hangup-risk-live")
    assert en["title"] == "Hang-up risk — live" and en["timezone"] == zone
    assert [(p["id"], [t["rawSql"] for t in p["targets"]]) for p in en["panels"]] == [
        (p["id"], [t["rawSql"] for t in p["targets"]]) for p in live["panels"]], "same panels, same SQL"


def test_live_dashboard_content() -> None:
    d = _english("hangup-risk-live")
    assert d["refresh"] == "10s"
    assert d["title"] == "Hang-up risk — live"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert list(variables) == ["branch", "campaign", "channel", "script_version"]
    for v in variables.values():
        assert v["type"] == "query" and v["includeAll"] and v["multi"] and v["refresh"] in (1, 2)
        assert v["datasource"] == {"type": PLUGIN_ID, "uid": DATASOURCE_UID}
        assert v["query"].startswith("SELECT") and "allValue" not in v
    titles = {p["title"] for p in d["panels"]}
    assert len(titles) == len(d["panels"]), "titles are unique"
    for needed in ("Rates over time", "Hang-up rate by branch", "Last 15 minutes by branch",
                   "By script version (话术)", "Human vs robot", "By credit grade", "Pre-notified vs not",
                   "First-time vs repeat borrowers", "Hang-up stage breakdown", "Top flagged borrowers",
                   "Active spike alerts"):
        assert needed in titles
    # Every comparison carries its sample size.
    for p in d["panels"]:
        if p["title"].startswith(("By ", "Human", "Pre-", "First-")):
            sql = p["targets"][0]["rawSql"]
            assert "AS attempts" in sql and "AS connected" in sql
    # Filtered panels use $__conditionalAll for each variable.
    rates = next(p for p in d["panels"] if p["title"] == "Rates over time")["targets"][0]["rawSql"]
    for v in variables:
        assert f"$__conditionalAll({v} IN (${{{v}:singlequote}}), ${v})" in rates


def test_health_dashboard_content() -> None:
    d = _english("pipeline-health")
    titles = {p["title"] for p in d["panels"]}
    for needed in ("Event freshness", "Dead letters", "Latest dead letters", "Late events", "Sink batch size",
                   "Events per second: in, stored, dead-lettered"):
        assert needed in titles


def test_remedies_dashboard_content() -> None:
    """The remedies dashboard (docs/analytics.md): comparisons with interval and p-value, the
    weekday x hour grids and the best slots, with the settings' minimum sample in their SQL."""
    from hangwatch.platform.settings import load_settings

    s = load_settings().analytics
    d = _english("remedies")
    assert _load("remedies")["uid"] == REMEDIES_UID and _load("remedies")["title"] == "挂断整改 — 效果与拨打时段"
    assert [v["name"] for v in d["templating"]["list"]] == ["branch", "campaign", "channel", "script_version"]
    panels = {p["title"]: p["targets"][0]["rawSql"] for p in d["panels"]}
    for factor in ("Each script version against the rest", "Pre-notified against not", "Human against robot",
                   "Each credit grade against the rest"):
        sql = panels[f"{factor}: hang-up rate"]
        assert "AS ci_low" in sql and "AS p_value" in sql and "rollup_1m" in sql
    for segment in ("Best slots by credit grade", "Best slots: first-time borrowers or not", "Best slots by campaign",
                    "Best slots, all calls"):
        assert f"attempts >= {s.best_time_min_attempts} AND connected >= {s.best_time_min_connected}" in panels[segment]
        assert f"LIMIT {s.best_time_top} BY segment" in panels[segment]
    grid = panels["Contact rate: weekday × hour (Asia/Shanghai)"]
    assert f">= {s.best_time_min_attempts}, 1, NULL" in grid and "rollup_1d" not in grid  # hours: no day rows
