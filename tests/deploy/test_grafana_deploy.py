"""`hangwatch grafana deploy`: the --dry-run output against the documented API shapes, and the
real request path through grafana-client against a fake Grafana (no server can run here)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from hangwatch.cli import app
from hangwatch.grafana import deploy
from hangwatch.grafana.constants import DATASOURCE_UID, FOLDER_UID, PLUGIN_ID, RULE_GROUP

runner = CliRunner()
CHANNELS = {"HANGWATCH_WECOM_URL": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k1",
            "HANGWATCH_ALERT_WEBHOOK_URL": "https://hooks.bank.internal/a"}


@pytest.fixture(autouse=True)
def _channels(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HANGWATCH_DINGTALK_URL", "HANGWATCH_ALERT_EMAIL_TO"):
        monkeypatch.delenv(name, raising=False)
    for name, value in CHANNELS.items():
        monkeypatch.setenv(name, value)


def _dry_run() -> list[dict[str, Any]]:
    r = runner.invoke(app, ["grafana", "deploy", "--dry-run", "--clickhouse-password", "s3cret"])
    assert r.exit_code == 0, r.output
    assert "s3cret" not in r.stdout and "key=k1" not in r.stdout, "secrets and robot tokens masked"
    return json.loads(r.stdout)


def test_dry_run_shapes() -> None:
    reqs = _dry_run()
    assert reqs[0] == {"method": "GET", "path": "/api/health"}
    ds = reqs[1]
    assert (ds["method"], ds["path"]) == ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}")
    assert (ds["if_missing"]["method"], ds["if_missing"]["path"]) == ("POST", "/api/datasources")
    body = ds["body"]
    assert body["type"] == PLUGIN_ID and body["uid"] == DATASOURCE_UID
    assert set(body["jsonData"]) == {"host", "port", "protocol", "secure", "username", "defaultDatabase"}
    assert body["jsonData"]["username"] == "grafana" and body["secureJsonData"] == {"password": deploy.MASK}
    folder = reqs[2]
    assert folder["if_missing"] == {"method": "POST", "path": "/api/folders",
                                    "body": {"uid": FOLDER_UID, "title": "hangwatch"}}
    dashboards = [r for r in reqs if r["path"] == "/api/dashboards/db"]
    assert len(dashboards) == 3  # live, pipeline health, remedies
    for d in dashboards:
        assert d["method"] == "POST" and set(d["body"]) == {"dashboard", "folderUid", "overwrite", "message"}
        assert d["body"]["overwrite"] is True and d["body"]["dashboard"]["id"] is None
    rules = [r for r in reqs if r["path"].startswith("/api/v1/provisioning/alert-rules/")]
    assert len(rules) == 5
    for r in rules:
        assert r["method"] == "PUT" and r["if_missing"]["path"] == "/api/v1/provisioning/alert-rules"
        b = r["body"]
        assert b["folderUID"] == FOLDER_UID and b["ruleGroup"] == RULE_GROUP and b["orgID"] == 1
        assert b["condition"] == "C" and [d["refId"] for d in b["data"]] == ["A", "B", "C"]
        assert b["data"][0]["datasourceUid"] == DATASOURCE_UID and b["data"][0]["model"]["format"] == 1
        assert b["data"][0]["relativeTimeRange"]["from"] > b["data"][0]["relativeTimeRange"]["to"]
    group = next(r for r in reqs if "rule-groups" in r["path"])
    assert (group["method"], group["path"]) == ("PUT", f"/api/v1/provisioning/folder/{FOLDER_UID}/rule-groups/"
                                                       f"{RULE_GROUP}")
    assert isinstance(group["body"]["interval"], int)
    # notifications: templates, one integration per configured channel, then the policy tree
    tail = reqs[reqs.index(group) + 1:]
    assert [(r["method"], r["path"]) for r in tail] == [
        ("PUT", "/api/v1/provisioning/templates/hangwatch"),
        ("PUT", "/api/v1/provisioning/contact-points/hangwatch-notify-wecom"),
        ("PUT", "/api/v1/provisioning/contact-points/hangwatch-notify-webhook"),
        ("PUT", "/api/v1/provisioning/policies")]
    assert "hangwatch.markdown" in tail[0]["body"]["template"]
    for cp in tail[1:3]:
        assert cp["if_missing"]["path"] == "/api/v1/provisioning/contact-points"
        assert cp["body"]["name"] == "hangwatch" and cp["body"]["settings"]["url"] == deploy.MASK
    assert tail[1]["body"]["type"] == "wecom" and tail[2]["body"]["type"] == "webhook"
    assert tail[3]["body"]["routes"][0]["group_by"] == ["alertname", "alert_id"]


def test_no_notifications_flag_and_no_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CHANNELS:
        monkeypatch.delenv(name)
    r = runner.invoke(app, ["grafana", "deploy", "--dry-run", "--clickhouse-password", "pw"])
    assert r.exit_code == 1 and "no notification channel" in r.output
    r = runner.invoke(app, ["grafana", "deploy", "--dry-run", "--no-notifications", "--clickhouse-password", "pw"])
    assert r.exit_code == 0 and "/api/v1/provisioning/policies" not in r.stdout


class FakeResponse:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code, self._body = status, body
        self.headers = {"Content-Type": "application/json"}
        self.text = json.dumps(body)

    def json(self) -> Any:
        return self._body


class FakeGrafana:
    """Just enough of Grafana's API: objects keyed by path, 404 for unknown ones."""

    def __init__(self, version: str = "11.6.1", token: str = "good", status: int | None = None) -> None:
        self.version, self.token, self.status = version, token, status
        self.objects: dict[str, Any] = {}
        self.log: list[tuple[str, str]] = []

    def request(self, method: str, url: str, json: Any = None, auth: Any = None, **_: Any) -> FakeResponse:
        path = "/api" + url.split("/api", 1)[1]
        self.log.append((method.upper(), path))
        if path == "/api/health":
            return FakeResponse(200, {"database": "ok", "version": self.version})
        if self.status:
            return FakeResponse(self.status, {"message": "nope"})
        method = method.upper()
        key = {"/api/datasources": f"/api/datasources/uid/{json and json.get('uid')}",
               "/api/folders": f"/api/folders/{json and json.get('uid')}",
               "/api/v1/provisioning/alert-rules": f"/api/v1/provisioning/alert-rules/{json and json.get('uid')}",
               }.get(path, path)
        if path == "/api/dashboards/db":
            key = f"/api/dashboards/uid/{json['dashboard']['uid']}"
        if path == "/api/v1/provisioning/contact-points":
            key = f"/api/v1/provisioning/contact-points/{json['uid']}"
        singletons = ("rule-groups", "/templates/", "/policies")
        if method == "PUT" and key not in self.objects and not any(x in key for x in singletons):
            return FakeResponse(404, {"message": "not found"})
        # An update keeps what it does not mention (a folder's uid) and `overwrite` is no state.
        self.objects[key] = {**self.objects.get(key, {}), **{k: v for k, v in json.items() if k != "overwrite"}}
        return FakeResponse(200, {"status": "success"})


def _api(fake: FakeGrafana) -> Any:
    api = deploy.connect("http://grafana.test:3000", "good")
    api.client.s = fake  # grafana-client's HTTP session: everything above it is real
    return api


def test_deploy_is_idempotent() -> None:
    fake = FakeGrafana()
    plan = deploy.plan("clickhouse", "pw")
    assert deploy.deploy(_api(fake), plan) == "11.6.1"
    first = dict(fake.objects)
    log_first = list(fake.log)
    assert any(m == "POST" and p == "/api/datasources" for m, p in fake.log)  # created after a 404
    fake.log.clear()
    deploy.deploy(_api(fake), plan)
    assert fake.objects == first
    assert not any(m == "POST" and p in ("/api/datasources", "/api/folders") for m, p in fake.log)  # updated only
    assert len(first) == 1 + 1 + 3 + 5 + 1 + 1 + 2 + 1
    assert first["/api/v1/provisioning/contact-points/hangwatch-notify-wecom"]["settings"]["url"] == CHANNELS[
        "HANGWATCH_WECOM_URL"]
    assert any(m == "POST" and p == "/api/v1/provisioning/contact-points" for m, p in log_first)


@pytest.mark.parametrize(("status", "words"), [(401, "rejected the token"), (403, "Admin role")])
def test_auth_errors_are_clear(status: int, words: str) -> None:
    with pytest.raises(deploy.DeployError, match=words):
        deploy.deploy(_api(FakeGrafana(status=status)), deploy.plan("clickhouse", "pw"))


def test_unsupported_version() -> None:
    with pytest.raises(deploy.DeployError, match=r"10\.4\.2 is not supported"):
        deploy.deploy(_api(FakeGrafana(version="10.4.2")), deploy.plan("clickhouse", "pw"))


def test_cli_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    r = runner.invoke(app, ["grafana", "deploy", "--clickhouse-password", "pw"])
    assert r.exit_code == 1 and "no Grafana token" in r.output


def test_cli_help() -> None:
    for args in (["grafana", "--help"], ["grafana", "deploy", "--help"], ["grafana", "dashboards", "--help"],
                 ["report", "--help"]):
        assert runner.invoke(app, args).exit_code == 0
