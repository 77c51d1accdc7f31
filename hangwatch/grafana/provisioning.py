"""Grafana file provisioning: datasource, dashboards provider, contact point and policy.

Grafana expands $VAR / ${VAR} in these files from its environment (secrets stay out of the
repo); it does not expand inside alert rule query models, so the SQL macros survive."""

from __future__ import annotations

from typing import Any

from hangwatch.grafana.alerts import ORG_ID
from hangwatch.grafana.constants import (
    CH_READONLY_USER,
    DATASOURCE_NAME,
    DATASOURCE_UID,
    ENV_CH_PASSWORD,
    ENV_WEBHOOK_URL,
    FOLDER_TITLE,
    FOLDER_UID,
    PLUGIN_ID,
)
from hangwatch.platform.settings import Settings

ENV_CH_HOST = "HANGWATCH_GRAFANA_CH_HOST"
CH_NATIVE_PORT = 9000
# Where docker-compose.yml mounts deploy/grafana/dashboards inside the Grafana container.
DASHBOARDS_PATH = "/var/lib/grafana/dashboards/hangwatch"
CONTACT_POINT = "hangwatch-webhook"


def datasource_json_data(host: str, s: Settings) -> dict[str, Any]:
    # `defaultDatabase`, not `database`: the plugin reads only the former.
    return {"host": host, "port": CH_NATIVE_PORT, "protocol": "native", "secure": False,
            "username": CH_READONLY_USER, "defaultDatabase": s.clickhouse.database}


def datasources(s: Settings) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [{
            "name": DATASOURCE_NAME,
            "uid": DATASOURCE_UID,
            "type": PLUGIN_ID,
            "access": "proxy",
            "orgId": ORG_ID,
            "isDefault": True,
            "editable": False,
            "jsonData": datasource_json_data(f"${{{ENV_CH_HOST}}}", s),
            "secureJsonData": {"password": f"${{{ENV_CH_PASSWORD}}}"},
        }],
    }


def dashboard_provider() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [{
            "name": "hangwatch",
            "orgId": ORG_ID,
            "folder": FOLDER_TITLE,
            "folderUid": FOLDER_UID,
            "type": "file",
            # The files are generated; edits in the UI would be lost on the next deploy.
            "disableDeletion": True,
            "allowUiUpdates": False,
            "updateIntervalSeconds": 30,
            "options": {"path": DASHBOARDS_PATH, "foldersFromFilesStructure": False},
        }],
    }


def notifications() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "contactPoints": [{
            "orgId": ORG_ID,
            "name": CONTACT_POINT,
            "receivers": [{
                "uid": CONTACT_POINT,
                "type": "webhook",
                "settings": {"url": f"${{{ENV_WEBHOOK_URL}}}", "httpMethod": "POST"},
                "disableResolveMessage": False,
            }],
        }],
        "policies": [{
            "orgId": ORG_ID,
            "receiver": CONTACT_POINT,
            "group_by": ["grafana_folder", "alertname"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
        }],
    }
