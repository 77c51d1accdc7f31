"""Grafana file provisioning: datasource, dashboards provider, contact point, policies, templates.

Grafana expands $VAR / ${VAR} in these files from its environment (secrets stay out of the
repo); it does not expand inside alert rule query models, so the SQL macros survive."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hangwatch.grafana import notify
from hangwatch.grafana.alerts import ORG_ID
from hangwatch.grafana.constants import (
    CH_READONLY_USER,
    DATASOURCE_NAME,
    DATASOURCE_UID,
    ENV_CH_PASSWORD,
    FOLDER_TITLE,
    FOLDER_UID,
    PLUGIN_ID,
)
from hangwatch.platform.settings import Settings
from hangwatch.sinks.migrate import shown_database

ENV_CH_HOST = "HANGWATCH_GRAFANA_CH_HOST"
CH_NATIVE_PORT = 9000
# Where docker-compose.yml mounts deploy/grafana/dashboards inside the Grafana container.
DASHBOARDS_PATH = "/var/lib/grafana/dashboards/hangwatch"


def datasource_json_data(host: str, s: Settings) -> dict[str, Any]:
    # `defaultDatabase`, not `database`: the plugin reads only the former. The one the user may
    # read: the dashboard database unless privacy.show_borrower_ids (docs/privacy.md).
    return {"host": host, "port": CH_NATIVE_PORT, "protocol": "native", "secure": False,
            "username": CH_READONLY_USER, "defaultDatabase": shown_database(s)}


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


# Lines that open and close one channel's receiver in notifications.yml: the Grafana image's
# entrypoint (deploy/grafana/channels.sh) drops the blocks whose variables are unset, so only
# the configured channels exist (Grafana refuses an integration without its URL).
CHANNEL_BEGIN = "# hangwatch-channel:"
CHANNEL_END = "# hangwatch-channel-end"


def notifications() -> dict[str, Any]:
    """Contact point (every channel), the old contact point's deletion and the policy tree."""
    return {
        "apiVersion": 1,
        "deleteContactPoints": [{"orgId": ORG_ID, "uid": notify.OLD_CONTACT_POINT_UID}],
        "contactPoints": [{"orgId": ORG_ID, "name": notify.CONTACT_POINT,
                           "receivers": [c.receiver() for c in notify.CHANNELS]}],
        "policies": [{"orgId": ORG_ID, **notify.policy_tree()}],
    }


def notifications_text(dump: Callable[[dict[str, Any]], str]) -> str:
    """notifications.yml: `dump` of notifications() with each receiver between marker lines
    naming its channel and the variables it needs."""
    lines = dump(notifications()).splitlines()
    out: list[str] = []
    open_block = False
    channels = iter(notify.CHANNELS)
    for line in lines:
        stripped = line.lstrip()
        starts = line.startswith("  - uid: hangwatch-notify-")
        ends_list = open_block and not line.startswith("    ") and not starts
        if open_block and (starts or ends_list):
            out.append(f"  {CHANNEL_END}")
            open_block = False
        if starts:
            c = next(channels)
            assert stripped == f"- uid: {c.uid}", stripped
            out.append(f"  {CHANNEL_BEGIN} {c.name} {' '.join(c.env)}")
            open_block = True
        out.append(line)
    assert not open_block and next(channels, None) is None, "every channel's block is closed"
    return "\n".join(out) + "\n"


def templates(s: Settings) -> dict[str, Any]:
    return {"apiVersion": 1, "templates": notify.templates(s)}
