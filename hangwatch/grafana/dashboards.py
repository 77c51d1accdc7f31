"""Dashboard models to the JSON Grafana stores (the bare model, as file provisioning and
POST /api/dashboards/db take it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from hangwatch.grafana import health, live, remedies
from hangwatch.grafana.constants import SCHEMA_VERSION
from hangwatch.platform.settings import Settings

# file name (without .json) -> builder
BUILDERS: dict[str, Callable[[Settings], dm.Dashboard]] = {
    "hangup-risk-live": live.build,
    "pipeline-health": health.build,
    "remedies": remedies.build,
}


def to_dict(model: dm.Dashboard) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    # `id: null` lets every Grafana assign its own numeric id; the uid is the identity.
    data["id"] = None
    # The SDK's 11.6 build writes its own newest schemaVersion; 39 is what Grafana 10.3-11.x
    # write themselves, and newer Grafanas migrate it on load.
    data["schemaVersion"] = SCHEMA_VERSION
    data["templating"].setdefault("list", [])  # Grafana expects the list even when empty
    for panel in data.get("panels", []):
        panel.setdefault("fieldConfig", {"defaults": {}, "overrides": []})
    # Grafana's built-in "Annotations & Alerts" entry, which the UI adds to every dashboard
    # (alert state changes show on the time series); the SDK leaves the list empty.
    data["annotations"] = {"list": [{
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }]}
    return data


def all_dashboards(s: Settings) -> dict[str, dict[str, Any]]:
    return {name: to_dict(build(s)) for name, build in BUILDERS.items()}


def dumps(data: dict[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, trailing newline (diff-friendly)."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
