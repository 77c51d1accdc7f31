"""`hangwatch grafana deploy`: push the datasource, folder, dashboards and alert rules to a
running Grafana through its HTTP API (grafana-client), idempotently.

Every step is an upsert keyed by our fixed uids: update first, create when the update says
404. Running the deploy twice leaves the same state (dashboards get a new version number,
nothing else changes). The plan is data (ApiRequest), so `--dry-run` prints exactly what
would be sent. Notifications (notify.py) go the same way as the provisioning files: the
message templates, one contact point integration per channel whose variables are set in the
deploying environment, and the policy tree. The policy tree is org-wide (PUT replaces it):
`notifications=False` (`--no-notifications`) leaves templates, contact points and policies to
the Grafana admins.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

from grafana_client import GrafanaApi, TokenAuth
from grafana_client.client import GrafanaClientError, GrafanaException

from hangwatch.grafana import alerts, dashboards, notify, provisioning
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


# Secrets in contact point settings: a robot's URL carries its token.
_SECRET_SETTINGS = ("url", "addresses")


def _masked(body: dict[str, Any]) -> dict[str, Any]:
    if "secureJsonData" in body:
        return {**body, "secureJsonData": dict.fromkeys(body["secureJsonData"], MASK)}
    if "settings" in body and "type" in body:
        return {**body, "settings": {k: MASK if k in _SECRET_SETTINGS else v for k, v in body["settings"].items()}}
    return body


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


def plan(ch_host: str, password: str, s: Settings | None = None, *, notifications: bool = True,
         environ: Mapping[str, str] | None = None) -> list[ApiRequest]:
    """Every request of a deploy, in order (the health check comes first). The settings
    (default: the process's) give the database, zone, language and thresholds, as for the
    files; `environ` (default: the process's environment) the notification channels."""
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
    if notifications:
        reqs.extend(notification_requests(s, os.environ if environ is None else environ))
    return reqs


def notification_requests(s: Settings, environ: Mapping[str, str]) -> list[ApiRequest]:
    """Templates, then the contact point's integrations (one per configured channel), then
    the policy tree that routes to it (last: it needs the contact point)."""
    channels = notify.active_channels(environ)
    if not channels:
        names = ", ".join(v for c in notify.CHANNELS for v in c.env)
        raise DeployError(f"no notification channel is set: set at least one of {names} (or pass "
                          "--no-notifications to leave contact points and policies as they are)")
    reqs = [ApiRequest("PUT", f"/api/v1/provisioning/templates/{t['name']}", {"template": t["template"]})
            for t in notify.templates(s)]
    for c in channels:
        body = {**c.receiver(environ), "name": notify.CONTACT_POINT}
        reqs.append(ApiRequest("PUT", f"/api/v1/provisioning/contact-points/{c.uid}", body,
                               if_missing=ApiRequest("POST", "/api/v1/provisioning/contact-points", body)))
    reqs.append(ApiRequest("PUT", "/api/v1/provisioning/policies", notify.policy_tree()))
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
