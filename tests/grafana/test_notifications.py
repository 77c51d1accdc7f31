"""Notifications: the provisioning files against Grafana's documented formats (contact point
types and their settings keys for dingding, wecom, email, webhook; policies; templates), the
image's channel filter for every combination of variables, and the message templates rendered
by Go's text/template (tests/grafana/gotemplate, what Grafana runs) on alerts built from the
records the fixture stored, with the rule's own SQL."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hangwatch.grafana import alerts, files, notify
from hangwatch.grafana.constants import LIVE_UID
from hangwatch.platform.settings import ROOT, load_settings
from hangwatch.sinks.backends.base import Backend
from tests.grafana.pipeline_fixture import SPIKE_BRANCH, START, Fixture
from tests.grafana.test_panel_sql import T, run

SPIKE_BRANCH_ZH = "上海浦东"  # the glossary's display name of SPIKE_BRANCH (labels come from the zh-CN rules)

PROV = files.DEPLOY_DIR / "provisioning" / "alerting"
GO_DIR = Path(__file__).with_name("gotemplate")
GO_BIN = ROOT / ".local" / "gotemplate" / "render"
EXTERNAL_URL = "https://grafana.bank.internal/"

# Settings keys each integration reads (github.com/grafana/alerting receivers/<type>/config.go)
# and the ones it requires.
SETTINGS_KEYS = {
    "dingding": ({"url", "msgType", "title", "message"}, {"url"}),
    "wecom": ({"endpointUrl", "url", "agent_id", "corp_id", "secret", "msgtype", "message", "title", "touser"},
              {"url"}),
    "email": ({"addresses", "singleEmail", "message", "subject"}, {"addresses"}),
    "webhook": ({"url", "httpMethod", "maxAlerts", "authorization_scheme", "authorization_credentials", "username",
                 "password", "title", "message"}, {"url"}),
}
DURATION = re.compile(r"^\d+[smhdw]$")


def _yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load((PROV / name).read_text(encoding="utf-8"))


def _seconds(d: str) -> int:
    return int(d[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[d[-1]]


def test_contact_point_channels() -> None:
    doc = _yaml("notifications.yml")
    assert doc["apiVersion"] == 1
    assert doc["deleteContactPoints"] == [{"orgId": 1, "uid": "hangwatch-webhook"}]
    (cp,) = doc["contactPoints"]
    assert cp["orgId"] == 1 and cp["name"] == notify.CONTACT_POINT
    by_type = {r["type"]: r for r in cp["receivers"]}
    assert set(by_type) == set(SETTINGS_KEYS)
    expected_env = {"dingding": "HANGWATCH_DINGTALK_URL", "wecom": "HANGWATCH_WECOM_URL",
                    "email": "HANGWATCH_ALERT_EMAIL_TO", "webhook": "HANGWATCH_ALERT_WEBHOOK_URL"}
    for kind, r in by_type.items():
        allowed, required = SETTINGS_KEYS[kind]
        assert set(r) == {"uid", "type", "settings", "disableResolveMessage"}
        assert set(r["settings"]) <= allowed and required <= set(r["settings"]), kind
        assert re.fullmatch(r"[a-zA-Z0-9\-_]{1,40}", r["uid"]) and r["uid"] != "hangwatch-webhook"
        assert r["disableResolveMessage"] is False, "the resolved notice is wanted"
        secret = r["settings"]["addresses" if kind == "email" else "url"]
        assert secret == f"${{{expected_env[kind]}}}", "from the environment, never in the file"
        title = r["settings"]["subject" if kind == "email" else "title"]
        assert title == '{{ template "hangwatch.title" . }}'
    assert by_type["dingding"]["settings"]["msgType"] in ("link", "actionCard")
    assert by_type["wecom"]["settings"]["msgtype"] in ("markdown", "text")
    assert by_type["webhook"]["settings"]["httpMethod"] in ("POST", "PUT")


def test_policies_group_one_alert_id_per_notice() -> None:
    (root,) = _yaml("notifications.yml")["policies"]
    assert root["orgId"] == 1 and root["receiver"] == notify.CONTACT_POINT
    for route in [root, *root["routes"]]:
        assert route["receiver"] == notify.CONTACT_POINT
        for key in ("group_wait", "group_interval", "repeat_interval"):
            assert DURATION.match(route[key]), route[key]
        assert _seconds(route["repeat_interval"]) >= _seconds(route["group_interval"])
    spike, flag = root["routes"]
    assert spike["object_matchers"] == [["hangwatch_kind", "=", "spike"]]
    assert spike["group_by"] == ["alertname", "alert_id"]
    # No reminder can come before the instance leaves the rule (its lookback).
    assert _seconds(spike["repeat_interval"]) > alerts.SPIKE_LOOKBACK_S >= 7 * 86400
    assert flag["object_matchers"] == [["hangwatch_kind", "=", "flag"]]
    assert _seconds(flag["repeat_interval"]) > alerts.FLAG_LOOKBACK_S
    rules = {r["uid"]: r for g in _yaml("rules.yml")["groups"] for r in g["rules"]}
    assert rules[alerts.SPIKE_RULE_UID]["labels"]["hangwatch_kind"] == "spike"
    assert rules[alerts.FLAG_RULE_UID]["labels"]["hangwatch_kind"] == "flag"


def test_templates_file() -> None:
    doc = _yaml("templates.yml")
    assert doc["apiVersion"] == 1
    (tpl,) = doc["templates"]
    assert set(tpl) == {"orgId", "name", "template"} and tpl["name"] == notify.TEMPLATE_NAME
    defined = set(re.findall(r'\{\{ define "([\w.]+)" -?\}\}', tpl["template"]))
    used = set(re.findall(r'template "([\w.]+)"', (PROV / "notifications.yml").read_text(encoding="utf-8")))
    assert used <= defined and {"hangwatch.title", "hangwatch.markdown", "hangwatch.text"} <= defined
    assert "$" not in tpl["template"], "Grafana would expand $NAME in a provisioning file"
    assert notify.KEYWORD in tpl["template"].split('define "hangwatch.title"')[1].split("{{ end }}")[0]
    assert "【hangwatch】" in tpl["template"] and "挂断率" in tpl["template"]


def _filter(env: dict[str, str], out: Path) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HANGWATCH_CHANNELS_ONLY": "1",
            "HANGWATCH_PROVISIONING_SRC": str(files.DEPLOY_DIR / "provisioning"),
            "HANGWATCH_PROVISIONING_OUT": str(out)}
    return subprocess.run(["sh", str(files.DEPLOY_DIR / "channels.sh")], env={**base, **env}, capture_output=True,
                          text=True, timeout=30, check=False)


def test_channel_filter_keeps_the_configured_channels(tmp_path: Path) -> None:
    """deploy/grafana/channels.sh (the image's entrypoint) for every combination of variables:
    exactly the set channels remain, the file stays valid YAML, nothing set is an error."""
    envs = {"dingding": "HANGWATCH_DINGTALK_URL", "wecom": "HANGWATCH_WECOM_URL",
            "email": "HANGWATCH_ALERT_EMAIL_TO", "webhook": "HANGWATCH_ALERT_WEBHOOK_URL"}
    for n in range(len(envs) + 1):
        for chosen in itertools.combinations(sorted(envs), n):
            env = {envs[k]: f"https://robot.example/{k}" for k in chosen}
            env["GF_SMTP_HOST"] = "smtp.bank.internal:25"
            out = tmp_path / "-".join(chosen or ("none",))
            r = _filter(env, out)
            if not chosen:
                assert r.returncode != 0 and "no notification channel" in r.stderr
                continue
            assert r.returncode == 0, r.stderr
            doc = yaml.safe_load((out / "alerting" / "notifications.yml").read_text(encoding="utf-8"))
            (cp,) = doc["contactPoints"]
            assert sorted(x["type"] for x in cp["receivers"]) == sorted(chosen)
            assert doc["policies"][0]["receiver"] == cp["name"]
            assert (out / "alerting" / "rules.yml").read_text() == (PROV / "rules.yml").read_text()
    r = _filter({"HANGWATCH_ALERT_EMAIL_TO": "risk@bank.example"}, tmp_path / "no-smtp")
    assert r.returncode != 0 and "GF_SMTP_HOST" in r.stderr


def test_deploy_sends_the_same_contact_points_and_routes() -> None:
    from hangwatch.grafana import deploy, provisioning

    env = {"HANGWATCH_DINGTALK_URL": "https://oapi.dingtalk.com/robot/send?access_token=t",
           "HANGWATCH_ALERT_EMAIL_TO": "risk@bank.example"}
    reqs = deploy.notification_requests(load_settings(), env)
    file_doc = provisioning.notifications()
    assert reqs[0].body == {"template": notify.templates(load_settings())[0]["template"]}
    cps = [r.body for r in reqs if r.path.startswith("/api/v1/provisioning/contact-points/")]
    by_uid = {r["uid"]: r for r in file_doc["contactPoints"][0]["receivers"]}
    assert [c["type"] for c in cps if c] == ["dingding", "email"]
    for c in cps:
        assert c is not None
        expected = {k: (env["HANGWATCH_DINGTALK_URL"] if v == "${HANGWATCH_DINGTALK_URL}" else
                        env["HANGWATCH_ALERT_EMAIL_TO"] if v == "${HANGWATCH_ALERT_EMAIL_TO}" else v)
                    for k, v in by_uid[c["uid"]]["settings"].items()}
        assert c["settings"] == expected and c["name"] == notify.CONTACT_POINT
    assert reqs[-1].path == "/api/v1/provisioning/policies"
    assert {**reqs[-1].body, "orgId": 1} == file_doc["policies"][0]  # type: ignore[dict-item]
    with pytest.raises(deploy.DeployError, match="no notification channel"):
        deploy.notification_requests(load_settings(), {})


# --- rendering with Go's text/template -------------------------------------------------------


def _go_binary() -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.fail("the Go toolchain is missing: `go` renders the notification templates as Grafana does "
                    "(install golang, https://go.dev/dl/)")
    sources = [GO_DIR / "main.go", GO_DIR / "go.mod"]
    if not GO_BIN.is_file() or GO_BIN.stat().st_mtime < max(p.stat().st_mtime for p in sources):
        GO_BIN.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([go, "build", "-o", str(GO_BIN), "."], cwd=GO_DIR, capture_output=True, text=True,
                           timeout=300, check=False, env={**os.environ, "GOFLAGS": "-mod=mod"})
        assert r.returncode == 0, r.stderr
    return GO_BIN


def _render(template: str, data: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    payload = {"template": template, "execute": ["hangwatch.title", "hangwatch.markdown", "hangwatch.text"],
               "data": data, "annotations": annotations}
    r = subprocess.run([str(_go_binary())], input=json.dumps(payload), capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def _rule(uid: str) -> dict[str, Any]:
    return next(r for g in _yaml("rules.yml")["groups"] for r in g["rules"] if r["uid"] == uid)


def _alerts_from_rule(uid: str, backend: Backend, fx: Fixture) -> list[dict[str, Any]]:
    """What Grafana makes of the rule's result: one alert per row, string columns as labels
    (plus the rule's labels and alertname), the number as its value; 0 = resolved."""
    rule = _rule(uid)
    q = rule["data"][0]
    res = run(backend, fx, q["model"]["rawSql"], f=T - q["relativeTimeRange"]["from"], t=T)
    out = []
    for row in res.dicts():
        labels = {k: v for k, v in row.items() if isinstance(v, str)}
        (value,) = [v for v in row.values() if not isinstance(v, str)]
        labels.update(rule["labels"], alertname=rule["title"], grafana_folder="hangwatch")
        out.append({"status": "firing" if value > 0 else "resolved", "labels": labels,
                    "annotations": {}, "values": {"B": float(value), "C": float(value > 0)},
                    "valueString": f"[ var='B' value={value} ]", "startsAt": "2025-06-02T02:10:00Z",
                    "endsAt": "0001-01-01T00:00:00Z"})
    return out


def _group(alerts_: list[dict[str, Any]], group_by: list[str]) -> dict[str, Any]:
    common = {k: v for k, v in alerts_[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts_)}
    return {"receiver": notify.CONTACT_POINT, "status": "firing" if any(a["status"] == "firing" for a in alerts_)
            else "resolved", "alerts": alerts_, "groupLabels": {k: common.get(k, "") for k in group_by},
            "commonLabels": common, "commonAnnotations": {}, "externalURL": EXTERNAL_URL, "groupKey": "{}"}


def test_spike_notices_carry_the_numbers(backend: Backend, fixture_db: Fixture) -> None:
    rule = _rule(alerts.SPIKE_RULE_UID)
    found = _alerts_from_rule(alerts.SPIKE_RULE_UID, backend, fixture_db)
    by_value = {a["labels"]["value"]: a for a in found}
    assert set(by_value) == {SPIKE_BRANCH, "beijing-haidian"}
    tpl = notify.template_text(load_settings(), "zh-CN")
    # the spike (still firing): one group per alert_id
    out = _render(tpl, _group([by_value[SPIKE_BRANCH]], ["alertname", "alert_id"]), rule["annotations"])
    title, md, text = (out["rendered"][k] for k in ("hangwatch.title", "hangwatch.markdown", "hangwatch.text"))
    # messages show the glossary's display name; the dashboard link keeps the code
    assert title == f"【hangwatch】告警 挂断率突增：分行 {SPIKE_BRANCH_ZH} 55%"
    for needle in ("挂断率：55%（Wilson 下限 40%，基线 18%）", "接通 40 次，其中挂断 22 次", "基线 900 次接通",
                   "窗口：2025-06-02 10:05-10:10（Asia/Shanghai）", f"分行 {SPIKE_BRANCH_ZH}"):
        assert needle in md and needle in text, (needle, md)
    start_ms = int(START.timestamp() * 1000) + (2 * 3600 + 5 * 60) * 1000
    link = (f"{EXTERNAL_URL}d/{LIVE_UID}?orgId=1&var-branch={SPIKE_BRANCH}&from={start_ms - 3_600_000}"
            f"&to={start_ms + 300_000 + 3_600_000}")
    assert f"[打开看板]({link})" in md and f"看板：{link}" in text
    assert md.startswith("#### 【hangwatch】")
    assert out["alerts"][0]["summary"] == (
        f"分行 {SPIKE_BRANCH_ZH}：挂断率 55%（基线 18%），窗口 2025-06-02 10:05-10:10")
    # the one the stream resolved: its resolved notice, with the numbers it fired with
    resolved = _render(tpl, _group([by_value["beijing-haidian"]], ["alertname", "alert_id"]), rule["annotations"])
    assert resolved["rendered"]["hangwatch.title"].startswith("【hangwatch】已解除 挂断率突增：分行 北京海淀")
    assert "**已解除**" in resolved["rendered"]["hangwatch.markdown"]
    assert "窗口：2025-06-02 09:00-09:05" in resolved["rendered"]["hangwatch.text"]
    # English, from the same records
    en = _render(notify.template_text(load_settings(), "en"), _group([by_value[SPIKE_BRANCH]], ["alertname"]), {})
    assert en["rendered"]["hangwatch.title"] == f"【hangwatch】FIRING hang-up spike：branch {SPIKE_BRANCH_ZH} 55%"
    assert "Hang-up rate: 55% (Wilson lower bound 40%, baseline 18%)" in en["rendered"]["hangwatch.text"]


def test_escalated_flag_digest(backend: Backend, fixture_db: Fixture) -> None:
    found = _alerts_from_rule(alerts.FLAG_RULE_UID, backend, fixture_db)
    order = {"raised": 1, "escalated": 2, "resolved": 3}
    latest: dict[str, str] = {}
    for f in fixture_db.flags:
        if order[f["status"]] > order.get(latest.get(f["flag_id"], ""), 0):
            latest[f["flag_id"]] = f["status"]
    escalated = {f["flag_id"] for f in fixture_db.flags if f["status"] == "escalated"}
    assert {a["labels"]["flag_id"]: a["status"] for a in found} == {
        i: "firing" if latest[i] == "escalated" else "resolved" for i in escalated}
    assert any(a["status"] == "firing" for a in found)
    out = _render(notify.template_text(load_settings(), "zh-CN"), _group(found, ["alertname"]),
                  _rule(alerts.FLAG_RULE_UID)["annotations"])
    found = [a for a in found if a["status"] == "firing"]
    title, text = out["rendered"]["hangwatch.title"], out["rendered"]["hangwatch.text"]
    assert title == f"【hangwatch】告警 借款人标记升级：{len(found)}"
    assert "条升级标记已解除或已超过 24 小时" in text or len(found) == len(escalated)
    assert f"{len(found)} 位借款人的标记已升级" in text
    for a in found:
        lab = a["labels"]
        line = f"借款人 {lab['borrower_id']}：规则 {lab['rule_id']}，{lab['calls']} 次呼叫，最后一次 {lab['last_call']}"
        assert line in text
    assert f"{EXTERNAL_URL}d/{LIVE_UID}?orgId=1&from=now-24h&to=now" in text


def test_pipeline_rule_notice(backend: Backend, fixture_db: Fixture) -> None:
    rule = _rule("hangwatch-dlq-growth")
    a = {"status": "firing", "labels": {**rule["labels"], "alertname": rule["title"], "grafana_folder": "hangwatch"},
         "annotations": {}, "values": {"B": 120.0, "C": 1.0}, "valueString": "", "startsAt": "2025-06-02T02:10:00Z",
         "endsAt": "0001-01-01T00:00:00Z"}
    out = _render(notify.template_text(load_settings(), "zh-CN"), _group([a], ["grafana_folder", "alertname"]),
                  {"summary": rule["annotations"]["summary"]})
    assert out["rendered"]["hangwatch.title"] == "【hangwatch】告警 死信增长"
    assert "[告警] 120 条消息进入死信" in out["rendered"]["hangwatch.text"].replace("10 分钟内 ", "")
