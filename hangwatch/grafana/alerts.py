"""Grafana-managed alert rules, in the two shapes Grafana takes them: the file-provisioning
shape (provisioning/alerting/*.yml) and the HTTP provisioning API shape (`grafana deploy`).

Each rule: query A (ClickHouse, table format) -> B reduce(last) -> C threshold; condition C.
A table result with a string column gives one alert instance per row (per branch)."""

from __future__ import annotations

import dataclasses
from typing import Any

from hangwatch.grafana.constants import (
    DATASOURCE_UID,
    DLQ_GROWTH_THRESHOLD,
    FOLDER_TITLE,
    FOLDER_UID,
    RULE_GROUP,
    RULE_GROUP_INTERVAL_S,
    SPIKE_RATE_THRESHOLD,
    STALLED_AFTER_S,
)
from hangwatch.grafana.query import ClickHouseQuery, Format
from hangwatch.grafana.sql import rule as rule_sql
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


def rules(s: Settings) -> tuple[Rule, ...]:
    """The rules; the spike's minimum sample is the stream's (alerts.min_connected)."""
    min_connected = s.alerts.min_connected
    return (
        Rule(
            uid="hangwatch-hangup-spike-branch",
            title="Hang-up spike by branch",
            sql=rule_sql(s, "hangup_spike_by_branch"), range_s=300, threshold=SPIKE_RATE_THRESHOLD, for_="2m",
            # No branch reached the minimum sample: nothing to judge, not an incident.
            no_data="OK",
            summary="Branch {{ $labels.branch }}: 5-minute hang-up rate {{ humanizePercentage $values.B.Value }}",
            description=(f"hung_up / connected over the last 5 minutes is above {SPIKE_RATE_THRESHOLD:.0%} with at "
                         f"least {min_connected} connected calls. Check the branch's scripts, agents and "
                         "call times on the 'Hang-up risk — live' dashboard."),
            severity="warning",
        ),
        Rule(
            uid="hangwatch-dlq-growth",
            title="Dead letters growing",
            sql=rule_sql(s, "dlq_count"), range_s=600, threshold=DLQ_GROWTH_THRESHOLD, for_="0s",
            no_data="OK",
            summary="{{ $values.B.Value }} messages dead-lettered in 10 minutes",
            description=(f"More than {DLQ_GROWTH_THRESHOLD} invalid messages reached call-outcomes.dlq in 10 "
                         "minutes: a producer sends malformed or out-of-contract events. See 'Latest dead "
                         "letters' on the 'Pipeline health' dashboard."),
            severity="warning",
        ),
        Rule(
            uid="hangwatch-pipeline-stalled",
            title="Pipeline stalled",
            sql=rule_sql(s, "seconds_since_stored"), range_s=3600, threshold=STALLED_AFTER_S, for_="2m",
            # No answer at all from ClickHouse is as bad as an old answer.
            no_data="Alerting",
            summary="No call stored for {{ $values.B.Value }} s",
            description=(f"The newest row in call_events was stored more than {STALLED_AFTER_S} s ago: the "
                         "simulator/producers, Kafka, the worker or the sink has stopped. See 'Pipeline health'."),
            severity="critical",
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
        "labels": {"team": "risk", "severity": rule.severity, "service": "hangwatch"},
        "annotations": {"summary": rule.summary, "description": rule.description},
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
