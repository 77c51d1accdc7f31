"""Provisioning files against Grafana's file formats (docs/dashboards.md, "Grafana's formats")."""

from __future__ import annotations

import re
from typing import Any

import yaml

from hangwatch.grafana import files
from hangwatch.grafana.constants import DATASOURCE_UID, FOLDER_TITLE, PLUGIN_ID

PROV = files.DEPLOY_DIR / "provisioning"


def _yaml(rel: str) -> dict[str, Any]:
    return yaml.safe_load((PROV / rel).read_text(encoding="utf-8"))


def test_datasource() -> None:
    doc = _yaml("datasources/hangwatch.yml")
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == PLUGIN_ID and ds["uid"] == DATASOURCE_UID
    jd = ds["jsonData"]
    # the one database the user may read (docs/privacy.md)
    assert "database" not in jd and jd["defaultDatabase"] == "hangwatch_dash"
    assert jd["protocol"] in ("native", "http") and jd["port"] in (9000, 9440) and jd["username"] == "grafana"
    assert re.fullmatch(r"\$\{\w+\}", ds["secureJsonData"]["password"]), "password from the environment"


def test_dashboard_provider() -> None:
    (p,) = _yaml("dashboards/hangwatch.yml")["providers"]
    assert p["type"] == "file" and p["folder"] == FOLDER_TITLE
    assert set(p["options"]) == {"path", "foldersFromFilesStructure"}


def test_alert_rules_file_shape() -> None:
    doc = _yaml("alerting/rules.yml")
    assert doc["apiVersion"] == 1
    (group,) = doc["groups"]
    assert {"orgId", "name", "folder", "interval", "rules"} <= set(group)
    uids = [r["uid"] for r in group["rules"]]
    assert uids == ["hangwatch-hangup-spike-branch", "hangwatch-dlq-growth", "hangwatch-pipeline-stalled",
                    "hangwatch-stream-spike", "hangwatch-flag-escalated"]
    for r in group["rules"]:
        assert {"uid", "title", "condition", "for", "noDataState", "execErrState", "labels", "annotations",
                "data"} <= set(r)
        assert r["noDataState"] in ("NoData", "Alerting", "OK", "KeepLast")
        assert r["execErrState"] in ("Error", "Alerting", "OK")
        assert re.fullmatch(r"\d+[smh]", r["for"])
        assert not any("$" in v for v in r["labels"].values()), "labels are env-interpolated by Grafana"
        refs = {d["refId"]: d for d in r["data"]}
        assert r["condition"] in refs
        a, b, c = refs["A"], refs["B"], refs["C"]
        assert a["datasourceUid"] == DATASOURCE_UID and a["relativeTimeRange"]["from"] > a["relativeTimeRange"]["to"]
        assert a["model"]["format"] == 1 and {"intervalMs", "maxDataPoints", "rawSql"} <= set(a["model"])
        assert "$__conditionalAll" not in a["model"]["rawSql"] and "${" not in a["model"]["rawSql"]
        assert b["datasourceUid"] == "__expr__" and b["model"]["type"] == "reduce" and b["model"]["expression"] == "A"
        assert c["model"]["type"] == "threshold" and c["model"]["expression"] == "B"
        assert c["model"]["conditions"][0]["evaluator"]["type"] == "gt"
    spike = group["rules"][0]["data"][0]
    assert spike["relativeTimeRange"]["from"] == 300 and "HAVING" in spike["model"]["rawSql"]


def test_notifying_rules() -> None:
    """The rules on the stream's spike alerts and on escalated flags: one instance per record,
    value 1 while firing/escalated, threshold > 0, no data = OK, localized summaries."""
    rules = {r["uid"]: r for g in _yaml("alerting/rules.yml")["groups"] for r in g["rules"]}
    for uid, kind, lookback in (("hangwatch-stream-spike", "spike", 7 * 86400),
                                ("hangwatch-flag-escalated", "flag", 86400)):
        r = rules[uid]
        assert r["labels"]["hangwatch_kind"] == kind and r["noDataState"] == "OK" and r["for"] == "0s"
        assert r["data"][0]["relativeTimeRange"] == {"from": lookback, "to": 0}
        assert r["data"][2]["model"]["conditions"][0]["evaluator"] == {"type": "gt", "params": [0]}
        assert "$labels." in r["annotations"]["summary"] and re.search(r"[\u4e00-\u9fff]", r["title"])
        assert r["annotations"]["__dashboardUid__"] == "hangwatch-hangup-risk-live"
