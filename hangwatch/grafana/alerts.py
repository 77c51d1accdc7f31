"""Grafana-managed alert rules, in the two shapes Grafana takes them: the file-provisioning
shape (provisioning/alerting/*.yml) and the HTTP provisioning API shape (`grafana deploy`).

Each rule: query A (ClickHouse, table format) -> B reduce(last) -> C threshold; condition C.
A table result with string columns gives one alert instance per row, labelled with them (per
branch, per spike alert, per escalated flag); the one numeric column is the value."""

from __future__ import annotations

import dataclasses
from typing import Any

from hangwatch.grafana.constants import (
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    HEALTH_UID,
    LIVE_UID,
    RULE_GROUP,
    RULE_GROUP_INTERVAL_S,
)
from hangwatch.grafana.query import ClickHouseQuery, Format
from hangwatch.grafana.sql import rule as rule_sql
from hangwatch.grafana.texts import language, texts
from hangwatch.platform.settings import Settings

EXPR_UID = "__expr__"
ORG_ID = 1
INTERVAL_MS = 60_000
MAX_DATA_POINTS = 43_200


@dataclasses.dataclass(frozen=True)
class Rule:
    uid: str
    title: str
    sql: str
    range_s: int  # relativeTimeRange.from: the rule looks this far back ($__timeFilter)
    threshold: float
    for_: str
    no_data: str  # NoData | Alerting | OK | KeepLast
    summary: str
    description: str
    severity: str
    kind: str  # label hangwatch_kind, which the notification policy routes on
    dashboard_uid: str = LIVE_UID


# Label hangwatch_kind: the notification policy's child routes match on it (provisioning.py).
KIND_LABEL = "hangwatch_kind"
SPIKE_RULE_UID = "hangwatch-stream-spike"
FLAG_RULE_UID = "hangwatch-flag-escalated"
# How far back the notifying rules read: a spike alert's window / a flag's escalation older
# than this leaves the rule (Grafana then resolves the instance); the policies' repeat
# interval is longer, so a notice is never repeated (docs/alerting.md).
SPIKE_LOOKBACK_S = 7 * 86_400
FLAG_LOOKBACK_S = 86_400


def rules(s: Settings) -> tuple[Rule, ...]:
    """The rules, in the settings' language; the spike's minimum sample is the stream's
    (alerts.min_connected)."""
    t = texts(language(s), s.glossary_file)
    return (
        Rule(
            uid="hangwatch-hangup-spike-branch",
            title=t("rule.threshold.title"),
            sql=rule_sql(s, "hangup_spike_by_branch"), range_s=300, threshold=s.grafana.rate_alert_threshold, for_="2m",
            # No branch reached the minimum sample: nothing to judge, not an incident.
            no_data="OK",
            summary=t("rule.threshold.summary"),
            description=t("rule.threshold.description", threshold=f"{s.grafana.rate_alert_threshold:.0%}",
                          min_connected=s.alerts.min_connected),
            severity="warning", kind="threshold",
        ),
        Rule(
            uid="hangwatch-dlq-growth",
            title=t("rule.dlq.title"),
            sql=rule_sql(s, "dlq_count"), range_s=600, threshold=s.grafana.dlq_alert_threshold, for_="0s",
            no_data="OK",
            summary=t("rule.dlq.summary"),
            description=t("rule.dlq.description", threshold=s.grafana.dlq_alert_threshold),
            severity="warning", kind="pipeline", dashboard_uid=HEALTH_UID,
        ),
        Rule(
            uid="hangwatch-pipeline-stalled",
            title=t("rule.stalled.title"),
            sql=rule_sql(s, "seconds_since_stored"), range_s=3600, threshold=s.grafana.stalled_after_s, for_="2m",
            # No answer at all from ClickHouse is as bad as an old answer.
            no_data="Alerting",
            summary=t("rule.stalled.summary"),
            description=t("rule.stalled.description", threshold=s.grafana.stalled_after_s),
            severity="critical", kind="pipeline", dashboard_uid=HEALTH_UID,
        ),
        # The stream's own spike alerts (hangup_alerts): one instance per alert_id, labelled
        # with its dimension, value, window and numbers; 1 while firing, 0 once the stream
        # resolved it. The stream already tested it: fire at once.
        Rule(
            uid=SPIKE_RULE_UID,
            title=t("rule.spike.title"),
            sql=rule_sql(s, "spike_alert_states"), range_s=SPIKE_LOOKBACK_S, threshold=0, for_="0s",
            no_data="OK",  # no alert in the lookback: nothing to say
            summary=t("rule.spike.summary"),
            description=t("rule.spike.description"),
            severity="warning", kind="spike",
        ),
        # Flags that reached `escalated` in the last day: one instance per flag.
        Rule(
            uid=FLAG_RULE_UID,
            title=t("rule.flag.title"),
            sql=rule_sql(s, "escalated_flag_states"), range_s=FLAG_LOOKBACK_S, threshold=0, for_="0s",
            no_data="OK",
            summary=t("rule.flag.summary"),
            description=t("rule.flag.description"),
            severity="warning", kind="flag",
        ),
    )


def _query_model(rule: Rule) -> dict[str, Any]:
    model = ClickHouseQuery(ref_id="A", raw_sql=rule.sql, fmt=Format.TABLE).to_json()
    model.update({"intervalMs": INTERVAL_MS, "maxDataPoints": MAX_DATA_POINTS})
    return model


def _data(rule: Rule) -> list[dict[str, Any]]:
    rtr = {"from": rule.range_s, "to": 0}
    expr_ds = {"type": EXPR_UID, "uid": EXPR_UID}
    return [
        {"refId": "A", "relativeTimeRange": rtr, "datasourceUid": DATASOURCE_UID, "model": _query_model(rule)},
        {"refId": "B", "relativeTimeRange": rtr, "datasourceUid": EXPR_UID,
         "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last", "datasource": expr_ds}},
        {"refId": "C", "relativeTimeRange": rtr, "datasourceUid": EXPR_UID,
         "model": {"refId": "C", "type": "threshold", "expression": "B", "datasource": expr_ds,
                   "conditions": [{"evaluator": {"type": "gt", "params": [rule.threshold]}}]}},
    ]


def _common(rule: Rule) -> dict[str, Any]:
    return {
        "uid": rule.uid,
        "title": rule.title,
        "condition": "C",
        "data": _data(rule),
        "noDataState": rule.no_data,
        "execErrState": "Error",
        "for": rule.for_,
        "labels": {"team": "risk", "severity": rule.severity, "service": "hangwatch", KIND_LABEL: rule.kind},
        # __dashboardUid__: Grafana links the alert to the dashboard (UI, .DashboardURL).
        "annotations": {"summary": rule.summary, "description": rule.description,
                        "__dashboardUid__": rule.dashboard_uid},
        "isPaused": False,
    }


def file_provisioning(s: Settings) -> dict[str, Any]:
    """provisioning/alerting/rules.yml"""
    return {
        "apiVersion": 1,
        "groups": [{
            "orgId": ORG_ID,
            "name": RULE_GROUP,
            "folder": FOLDER_TITLE,
            "interval": f"{RULE_GROUP_INTERVAL_S}s",
            "rules": [_common(r) for r in rules(s)],
        }],
    }


def http_rule(rule: Rule) -> dict[str, Any]:
    """Body of POST /api/v1/provisioning/alert-rules (and PUT .../alert-rules/:uid): the rule
    carries its folder and group itself, and orgID is spelled with a capital ID."""
    body = _common(rule)
    body.update({"orgID": ORG_ID, "folderUID": FOLDER_UID, "ruleGroup": RULE_GROUP})
    return body


def http_rule_group(s: Settings) -> dict[str, Any]:
    """Body of PUT /api/v1/provisioning/folder/:folderUid/rule-groups/:group: sets the
    evaluation interval (seconds, an integer) of the group the rules were put in."""
    return {"title": RULE_GROUP, "folderUid": FOLDER_UID, "interval": RULE_GROUP_INTERVAL_S,
            "rules": [http_rule(r) for r in rules(s)]}
