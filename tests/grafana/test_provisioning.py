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
    assert "database" not in jd and jd["defaultDatabase"] == "hangwatch"
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
    assert uids == ["hangwatch-hangup-spike-branch", "hangwatch-dlq-growth", "hangwatch-pipeline-stalled"]
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


def test_contact_point_and_policy() -> None:
    doc = _yaml("alerting/notifications.yml")
    (cp,) = doc["contactPoints"]
    (recv,) = cp["receivers"]
    assert recv["type"] == "webhook" and recv["settings"]["url"] == "${HANGWATCH_ALERT_WEBHOOK_URL}"
    (policy,) = doc["policies"]
    assert policy["receiver"] == cp["name"] and policy["group_by"]
