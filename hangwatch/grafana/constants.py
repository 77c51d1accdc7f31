"""Fixed identifiers and the pinned versions every generated file refers to.

Changing a uid breaks links and alert history in existing Grafanas, so they are constants."""

from __future__ import annotations

from typing import Final

# Pinned pair (docs/dashboards.md): plugin 4.0-4.14 runs on Grafana >= 9.5, 4.15+ needs 11.6.
GRAFANA_IMAGE: Final = "grafana/grafana:11.6.1"
GRAFANA_VERSION: Final = "11.6.1"
PLUGIN_ID: Final = "grafana-clickhouse-datasource"
PLUGIN_VERSION: Final = "4.11.2"
# `grafana deploy` refuses other major lines: the dashboards are schemaVersion 39 and the
# provisioning API shapes used here are those of Grafana 11 (12 still accepts them).
SUPPORTED_GRAFANA_MAJORS: Final = (11, 12)

DATASOURCE_UID: Final = "hangwatch-clickhouse"
DATASOURCE_NAME: Final = "hangwatch ClickHouse"
DATASOURCE_REF: Final = {"type": PLUGIN_ID, "uid": DATASOURCE_UID}

FOLDER_UID: Final = "hangwatch"
FOLDER_TITLE: Final = "hangwatch"
RULE_GROUP: Final = "hangwatch"
RULE_GROUP_INTERVAL_S: Final = 60

LIVE_UID: Final = "hangwatch-hangup-risk-live"
HEALTH_UID: Final = "hangwatch-pipeline-health"
REMEDIES_UID: Final = "hangwatch-remedies"
SCHEMA_VERSION: Final = 39  # Grafana 10.3-11.x; newer Grafanas migrate it on load

# Environment variables read by Grafana's provisioning ($VAR) and by `grafana deploy`.
ENV_CH_PASSWORD: Final = "HANGWATCH_GRAFANA_CH_PASSWORD"
ENV_WEBHOOK_URL: Final = "HANGWATCH_ALERT_WEBHOOK_URL"
ENV_GRAFANA_TOKEN: Final = "GRAFANA_TOKEN"
CH_READONLY_USER: Final = "grafana"
