"""Notifications that reach people: the contact point's channels (DingTalk, WeCom, email,
webhook, each from environment variables), the message templates (Go text/template, as
Grafana runs them) and the notification policy tree. The same objects go into the
provisioning files (provisioning.py) and through the HTTP API (deploy.py). docs/alerting.md.

Grouping: a spike alert is one group per alert_id, so it gives one firing notice and at most
one resolved notice (repeat_interval is longer than the rule's lookback, so a still-firing
alert is never repeated); escalated flags are one digest group; the pipeline rules keep the
folder/rule grouping with a daily reminder."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Final

from hangwatch.grafana.alerts import FLAG_LOOKBACK_S, KIND_LABEL, ORG_ID, SPIKE_LOOKBACK_S
from hangwatch.grafana.constants import ENV_WEBHOOK_URL, HEALTH_UID, LIVE_UID
from hangwatch.grafana.texts import language, texts
from hangwatch.platform.settings import Settings
from hangwatch.platform.timeparse import local_zone

CONTACT_POINT: Final = "hangwatch"
TEMPLATE_NAME: Final = "hangwatch"
# The contact point of earlier releases (a webhook only); file provisioning deletes it.
OLD_CONTACT_POINT_UID: Final = "hangwatch-webhook"
# Every message carries it in its title: the keyword of a DingTalk robot's keyword security.
KEYWORD: Final = "hangwatch"

ENV_DINGTALK_URL: Final = "HANGWATCH_DINGTALK_URL"
ENV_WECOM_URL: Final = "HANGWATCH_WECOM_URL"
ENV_EMAIL_TO: Final = "HANGWATCH_ALERT_EMAIL_TO"

TITLE: Final = '{{ template "hangwatch.title" . }}'
MARKDOWN: Final = '{{ template "hangwatch.markdown" . }}'
TEXT: Final = '{{ template "hangwatch.text" . }}'


@dataclasses.dataclass(frozen=True)
class Channel:
    name: str  # dingtalk, wecom, email, webhook
    type: str  # Grafana's integration type
    env: tuple[str, ...]  # active when every one is set (non-empty)
    settings: dict[str, Any]  # with ${VAR} references, expanded by Grafana (files) or by deploy

    @property
    def uid(self) -> str:
        return f"hangwatch-notify-{self.name}"

    def active(self, environ: Mapping[str, str]) -> bool:
        return all(environ.get(v) for v in self.env)

    def receiver(self, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The integration as Grafana takes it; with `environ`, the ${VAR}s replaced."""
        settings = self.settings if environ is None else {
            k: _expand(v, environ) if isinstance(v, str) else v for k, v in self.settings.items()}
        return {"uid": self.uid, "type": self.type, "settings": settings, "disableResolveMessage": False}


def _expand(value: str, environ: Mapping[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: environ.get(m.group(1), ""), value)


CHANNELS: Final = (
    # DingTalk group robot: the webhook URL with its access_token. Grafana cannot sign (加签):
    # set the robot's security to a custom keyword (KEYWORD) or an IP allowlist.
    Channel("dingtalk", "dingding", (ENV_DINGTALK_URL,),
            {"url": f"${{{ENV_DINGTALK_URL}}}", "msgType": "actionCard", "title": TITLE, "message": MARKDOWN}),
    # WeCom group robot: the webhook URL with its key; markdown messages.
    Channel("wecom", "wecom", (ENV_WECOM_URL,),
            {"url": f"${{{ENV_WECOM_URL}}}", "msgtype": "markdown", "title": TITLE, "message": MARKDOWN}),
    # Email through Grafana's SMTP settings (GF_SMTP_*); addresses separated by ';'.
    Channel("email", "email", (ENV_EMAIL_TO,),
            {"addresses": f"${{{ENV_EMAIL_TO}}}", "singleEmail": True, "subject": TITLE, "message": TEXT}),
    # Any HTTP receiver (ticketing, SOC): Grafana's JSON payload, with our title and message.
    Channel("webhook", "webhook", (ENV_WEBHOOK_URL,),
            {"url": f"${{{ENV_WEBHOOK_URL}}}", "httpMethod": "POST", "title": TITLE, "message": TEXT}),
)

# Longer than either notifying rule's lookback: an instance leaves the rule (and resolves)
# before a repeat could be sent, so each alert_id gives one firing notice, never a reminder.
NEVER_REPEAT: Final = f"{max(SPIKE_LOOKBACK_S, FLAG_LOOKBACK_S) // 86_400 + 1}d"


def policy_tree() -> dict[str, Any]:
    """The notification policy tree (the API's Route; file provisioning adds orgId)."""
    return {
        "receiver": CONTACT_POINT,
        # Pipeline rules (threshold, DLQ, stalled): one group per rule, a daily reminder.
        "group_by": ["grafana_folder", "alertname"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "24h",
        "routes": [
            {
                # One group per spike alert: its firing notice after group_wait, its resolved
                # notice at the next group_interval after the stream resolves it, nothing else.
                "receiver": CONTACT_POINT,
                "object_matchers": [[KIND_LABEL, "=", "spike"]],
                "group_by": ["alertname", "alert_id"],
                "group_wait": "30s",
                "group_interval": "5m",
                "repeat_interval": NEVER_REPEAT,
            },
            {
                # Escalated flags: one digest; newly escalated borrowers are added at most
                # every 15 minutes.
                "receiver": CONTACT_POINT,
                "object_matchers": [[KIND_LABEL, "=", "flag"]],
                "group_by": ["alertname"],
                "group_wait": "1m",
                "group_interval": "15m",
                "repeat_interval": NEVER_REPEAT,
            },
        ],
    }


# The message templates (Go text/template, Grafana's notification template data). <<key>>
# is replaced by the language's text (grafana.tpl.<key> in the glossary) when generated. Functions:
# text/template's own only (eq, len, urlquery). No `$` anywhere: Grafana expands $VAR in
# provisioning files. .ExternalURL is Grafana's root_url, which always ends with '/'.
_TEMPLATE: Final = r'''{{ define "hangwatch.dim" }}{{ if eq . "branch" }}<<dim.branch>>{{ else if eq . "campaign" }}<<dim.campaign>>{{ else if eq . "script_version" }}<<dim.script_version>>{{ else }}{{ . }}{{ end }}{{ end }}

{{ define "hangwatch.title" -}}
【hangwatch】{{ if eq .Status "resolved" }}<<resolved>>{{ else }}<<firing>>{{ end }}
{{- if eq .CommonLabels.hangwatch_kind "spike" }} <<spike>>：{{ template "hangwatch.dim" .CommonLabels.dimension }} {{ .CommonLabels.value_name }} {{ .CommonLabels.hangup_rate }}
{{- else if eq .CommonLabels.hangwatch_kind "flag" }} <<flags>>：{{ len .Alerts.Firing }}
{{- else }} {{ .CommonLabels.alertname }}{{ end }}
{{- end }}

{{ define "hangwatch.body" -}}
{{ if eq .CommonLabels.hangwatch_kind "spike" }}{{ range .Alerts -}}
{{ if eq .Status "firing" }}<<spike_firing>>{{ else }}<<spike_resolved>>{{ end }}
- <<where>>：{{ template "hangwatch.dim" .Labels.dimension }} {{ .Labels.value_name }}
- <<window>>：{{ .Labels.window_local }}（<<zone>>）
- <<rate>>
- <<counts>>
- <<alert_id>>：{{ .Labels.alert_id }}
{{ end }}
{{- else if eq .CommonLabels.hangwatch_kind "flag" -}}
{{ if .Alerts.Firing }}<<flags_head>>
{{ range .Alerts.Firing }}- <<flag_line>>
{{ end }}{{ end }}
{{- if .Alerts.Resolved }}<<flags_resolved>>
{{ end }}
{{- else -}}
{{ range .Alerts }}- [{{ if eq .Status "resolved" }}<<resolved>>{{ else }}<<firing>>{{ end }}] {{ .Annotations.summary }}
  {{ .Annotations.description }}
{{ end }}
{{- end }}
{{- end }}

{{ define "hangwatch.link" -}}
{{ if eq .CommonLabels.hangwatch_kind "spike" -}}
{{ .ExternalURL }}d/<<live_uid>>?orgId=1&var-{{ .CommonLabels.dimension }}={{ .CommonLabels.value | urlquery }}&from={{ .CommonLabels.from_ms }}&to={{ .CommonLabels.to_ms }}
{{- else if eq .CommonLabels.hangwatch_kind "pipeline" -}}
{{ .ExternalURL }}d/<<health_uid>>?orgId=1
{{- else -}}
{{ .ExternalURL }}d/<<live_uid>>?orgId=1&from=now-24h&to=now
{{- end }}
{{- end }}

{{ define "hangwatch.markdown" -}}
#### {{ template "hangwatch.title" . }}

{{ template "hangwatch.body" . }}
[<<open_dashboard>>]({{ template "hangwatch.link" . }})
{{- end }}

{{ define "hangwatch.text" -}}
{{ template "hangwatch.body" . }}
<<dashboard>>：{{ template "hangwatch.link" . }}
{{- end }}
'''  # noqa: E501 (Go template lines)


def template_text(s: Settings, lang: str | None = None) -> str:
    """The message templates in `lang` (default: the settings' language), local times
    labelled with the settings' zone."""
    t = texts(lang or language(s), s.glossary_file)
    fixed = {"zone": str(local_zone(s)), "live_uid": LIVE_UID, "health_uid": HEALTH_UID}

    def fill(m: re.Match[str]) -> str:
        key = m.group(1)
        return fixed[key] if key in fixed else t(f"tpl.{key}")

    return re.sub(r"<<([\w.]+)>>", fill, _TEMPLATE)


def templates(s: Settings) -> list[dict[str, Any]]:
    return [{"orgId": ORG_ID, "name": TEMPLATE_NAME, "template": template_text(s)}]


def active_channels(environ: Mapping[str, str]) -> list[Channel]:
    return [c for c in CHANNELS if c.active(environ)]
