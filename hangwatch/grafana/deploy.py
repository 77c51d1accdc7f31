"""`hangwatch grafana deploy`: push the datasource, folder, dashboards and alert rules to a
running Grafana through its HTTP API (grafana-client), idempotently.

Every step is an upsert keyed by our fixed uids: update first, create when the update says
404. Running the deploy twice leaves the same state (dashboards get a new version number,
nothing else changes). The plan is data (ApiRequest), so `--dry-run` prints exactly what
would be sent. Contact points and the notification policy tree are org-wide and usually
owned by the Grafana admins, so only file provisioning (docker-compose) sets them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from grafana_client import GrafanaApi, TokenAuth
from grafana_client.client import GrafanaClientError, GrafanaException

from hangwatch.grafana import alerts, dashboards, provisioning
from hangwatch.grafana.constants import (
    DATASOURCE_NAME,
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    PLUGIN_ID,
    RULE_GROUP,
    SUPPORTED_GRAFANA_MAJORS,
)
from hangwatch.platform.settings import Settings, load_settings

MASK = "********"


class DeployError(Exception):
    """A deploy problem with a message that says what to do."""


@dataclasses.dataclass(frozen=True)
class ApiRequest:
    method: str  # GET, POST, PUT
    path: str  # starts with /api
    body: dict[str, Any] | None = None
    # Sent instead when this request answers 404 (create what an update did not find).
    if_missing: ApiRequest | None = None

    def to_json(self, *, mask: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "path": self.path}
        if self.body is not None:
            out["body"] = _masked(self.body) if mask else self.body
        if self.if_missing is not None:
            out["if_missing"] = self.if_missing.to_json(mask=mask)
        return out


def _masked(body: dict[str, Any]) -> dict[str, Any]:
    if "secureJsonData" not in body:
        return body
    return {**body, "secureJsonData": dict.fromkeys(body["secureJsonData"], MASK)}


HEALTH = ApiRequest("GET", "/api/health")


def datasource_body(ch_host: str, password: str, s: Settings) -> dict[str, Any]:
    return {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": PLUGIN_ID,
        "access": "proxy",
        # Never take over an existing Grafana's default datasource.
        "isDefault": False,
        "jsonData": provisioning.datasource_json_data(ch_host, s),
        "secureJsonData": {"password": password},
    }


def plan(ch_host: str, password: str, s: Settings | None = None) -> list[ApiRequest]:
    """Every request of a deploy, in order (the health check comes first). The settings
    (default: the process's) give the database, zone and thresholds, as for the files."""
    s = s or load_settings()
    ds = datasource_body(ch_host, password, s)
    reqs = [
        HEALTH,
        ApiRequest("PUT", f"/api/datasources/uid/{DATASOURCE_UID}", ds,
                   if_missing=ApiRequest("POST", "/api/datasources", ds)),
        ApiRequest("PUT", f"/api/folders/{FOLDER_UID}", {"title": FOLDER_TITLE, "overwrite": True},
                   if_missing=ApiRequest("POST", "/api/folders", {"uid": FOLDER_UID, "title": FOLDER_TITLE})),
    ]
    for name, model in dashboards.all_dashboards(s).items():
        reqs.append(ApiRequest("POST", "/api/dashboards/db", {
            "dashboard": model, "folderUid": FOLDER_UID, "overwrite": True,
            "message": f"hangwatch grafana deploy ({name})"}))
    for rule in alerts.rules(s):
        body = alerts.http_rule(rule)
        reqs.append(ApiRequest("PUT", f"/api/v1/provisioning/alert-rules/{rule.uid}", body,
                               if_missing=ApiRequest("POST", "/api/v1/provisioning/alert-rules", body)))
    reqs.append(ApiRequest("PUT", f"/api/v1/provisioning/folder/{FOLDER_UID}/rule-groups/{RULE_GROUP}",
                           alerts.http_rule_group(s)))
    return reqs


def connect(url: str, token: str, timeout_s: float = 10.0) -> GrafanaApi:
    return GrafanaApi.from_url(url, credential=TokenAuth(token), timeout=timeout_s)


def check_version(health: Any) -> str:
    """The Grafana version from GET /api/health, or DeployError if this line is unsupported."""
    version = str(health.get("version", "")) if isinstance(health, dict) else ""
    m = re.match(r"(\d+)\.(\d+)", version)
    if not m:
        raise DeployError(f"GET /api/health did not report a Grafana version (got {health!r}); is the URL a Grafana?")
    if int(m.group(1)) not in SUPPORTED_GRAFANA_MAJORS:
        supported = ", ".join(f"{v}.x" for v in SUPPORTED_GRAFANA_MAJORS)
        raise DeployError(f"Grafana {version} is not supported: the dashboards and alert rules are made for "
                          f"Grafana {supported}. Upgrade Grafana or use a matching hangwatch release.")
    return version


def send(api: GrafanaApi, req: ApiRequest) -> Any:
    """One request through grafana-client; falls back to `if_missing` on 404."""
    runner = getattr(api.client, req.method)
    try:
        return runner(req.path.removeprefix("/api"), json=req.body)
    except GrafanaClientError as e:
        if e.status_code == 404 and req.if_missing is not None:
            return send(api, req.if_missing)
        raise _explain(req, e) from e
    except GrafanaException as e:
        raise _explain(req, e) from e


def _explain(req: ApiRequest, e: GrafanaException) -> DeployError:
    where = f"{req.method} {req.path}"
    if e.status_code == 401:
        return DeployError(f"{where}: Grafana rejected the token (401 Unauthorized). Pass a valid service account "
                           "token with --token or GRAFANA_TOKEN.")
    if e.status_code == 403:
        return DeployError(f"{where}: the token is not allowed to do this (403 Forbidden). The service account needs "
                           "the Admin role (datasources and alert rules) in this organisation.")
    if e.status_code == 0:
        return DeployError(f"{where}: cannot reach Grafana: {e}")
    return DeployError(f"{where}: Grafana answered {e.status_code}: {e.message if hasattr(e, 'message') else e}")


def deploy(api: GrafanaApi, requests: list[ApiRequest]) -> str:
    """Send the plan; returns the Grafana version. Stops at the first failure."""
    version = check_version(send(api, requests[0]))
    for req in requests[1:]:
        send(api, req)
    return version
