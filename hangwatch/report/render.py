"""The report as one self-contained HTML file: inline CSS, charts as data: URIs, no scripts,
no external resources (it is mailed and archived)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from hangwatch.report import charts
from hangwatch.report.data import ReportData

_COMPARISON_TITLES = {
    "script_version": "Script version (话术)", "channel": "Channel (human / robot)", "credit_grade": "Credit grade",
    "pre_notified": "Pre-notified", "first_time_borrower": "First-time borrower",
}


def _pct(v: Any) -> str:
    return "–" if v is None else f"{float(v):.1%}"


def _int(v: Any) -> str:
    return "–" if v is None else f"{int(v):,}"


@jinja2.pass_context
def _dt(context: jinja2.runtime.Context, v: Any) -> str:
    """A time in the report's zone (the template's `tz`)."""
    if not isinstance(v, datetime):
        return "–" if v is None else str(v)
    return v.astimezone(ZoneInfo(context["tz"])).strftime("%Y-%m-%d %H:%M")


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(pct=_pct, int=_int, dt=_dt)

_TEMPLATE = _ENV.from_string("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Hang-up risk report {{ d.start|dt }} – {{ d.end|dt }}</title>
<style>
body { font: 14px/1.45 -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC", sans-serif; color: #1f2328;
       margin: 0 auto; max-width: 1120px; padding: 24px 32px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 1px solid #d0d7de;
     padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #57606a; margin-bottom: 16px; }
.kpis { display: flex; gap: 12px; flex-wrap: wrap; }
.kpi { border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 14px; min-width: 130px; }
.kpi .v { font-size: 22px; font-weight: 600; } .kpi .l { color: #57606a; font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 13px; }
th, td { border-bottom: 1px solid #eaeef2; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
img { max-width: 100%; } .note { color: #57606a; font-size: 12px; }
.sev-high { color: #c62828; font-weight: 600; } .sev-medium { color: #e65100; } .sev-low { color: #8d6e00; }
.evidence { font-size: 12px; color: #424a53; } td.nw { white-space: nowrap; }
</style></head><body>
<h1>Hang-up risk report · 挂断风险日报</h1>
<div class="meta">Period {{ d.start|dt }} – {{ d.end|dt }} ({{ tz }}), generated {{ generated|dt }}.
All rates are derived from counts; each comes with its sample size.</div>

<div class="kpis">
  <div class="kpi"><div class="v">{{ d.summary.get('attempts')|int }}</div><div class="l">calls (attempts)</div></div>
  <div class="kpi"><div class="v">{{ d.summary.get('connected')|int }}</div><div class="l">connected</div></div>
  <div class="kpi"><div class="v">{{ d.summary.get('hangup_rate')|pct }}</div>
    <div class="l">hang-up rate (hung up / connected)</div></div>
  <div class="kpi"><div class="v">{{ d.summary.get('decline_rate')|pct }}</div>
    <div class="l">decline rate (declined / attempts)</div></div>
  <div class="kpi"><div class="v">{{ d.open_flags|int }}</div><div class="l">open borrower flags</div></div>
  <div class="kpi"><div class="v">{{ d.active_alerts|int }}</div><div class="l">active spike alerts</div></div>
</div>

<h2>Rates over time</h2>
{% if img.rates %}<img alt="rates over time" src="data:image/png;base64,{{ img.rates }}">
<div class="note">One point per {{ d.interval_s // 60 }} minutes.</div>
{% else %}<p>No calls in this period.</p>{% endif %}

<h2>Branches by hang-up rate</h2>
<div class="grid"><div>
{% if img.branches %}<img alt="hang-up rate by branch" src="data:image/png;base64,{{ img.branches }}">{% endif %}
</div><div>
<table><tr><th>branch</th><th>attempts</th><th>connected</th><th>hang-up rate</th><th>decline rate</th></tr>
{% for r in d.branches.rows %}<tr><td>{{ r.branch }}</td><td class="n">{{ r.attempts|int }}</td>
<td class="n">{{ r.connected|int }}</td><td class="n">{{ r.hangup_rate|pct }}</td>
<td class="n">{{ r.decline_rate|pct }}</td></tr>
{% endfor %}</table></div></div>

<h3>Agents with the highest hang-up rate</h3>
<div class="note">Only agents with at least {{ min_sample }} connected calls in the period.</div>
{% if d.agents.rows %}<table><tr><th>agent</th><th>branch</th><th>attempts</th><th>connected</th>
<th>hang-up rate</th></tr>
{% for r in d.agents.rows %}<tr><td>{{ r.agent_id }}</td><td>{{ r.branch }}</td><td class="n">{{ r.attempts|int }}</td>
<td class="n">{{ r.connected|int }}</td><td class="n">{{ r.hangup_rate|pct }}</td></tr>
{% endfor %}</table>{% else %}<p>No agent reached the minimum sample.</p>{% endif %}

<h2>Script versions and other factors</h2>
<div class="grid"><div>
{% if img.scripts %}<img alt="hang-up rate by script version" src="data:image/png;base64,{{ img.scripts }}">{% endif %}
</div><div>
{% if img.stages %}<h3>Where borrowers hang up or refuse</h3>
<img alt="hang-up stage breakdown" src="data:image/png;base64,{{ img.stages }}">{% endif %}
</div></div>
{% for dim, t in d.comparisons.items() %}
<h3>{{ titles[dim] }}</h3>
<table><tr><th>{{ dim }}</th><th>attempts</th><th>connected</th><th>hang-up rate</th><th>decline rate</th>
<th>refusal rate</th><th>contact rate</th></tr>
{% for r in t.rows %}<tr><td>{{ r[dim] }}</td><td class="n">{{ r.attempts|int }}</td>
<td class="n">{{ r.connected|int }}</td>
<td class="n">{{ r.hangup_rate|pct }}</td><td class="n">{{ r.decline_rate|pct }}</td>
<td class="n">{{ r.refusal_rate|pct }}</td><td class="n">{{ r.contact_rate|pct }}</td></tr>
{% endfor %}</table>
{% endfor %}

<h2>Branch × hour of day</h2>
{% if img.heatmap %}<img alt="branch by hour heatmap" src="data:image/png;base64,{{ img.heatmap }}">
<div class="note">Hang-up rate by local hour; blank cells had no connected call.</div>{% endif %}

<h2>Flagged borrowers</h2>
{% if d.flags.rows %}<table><tr><th>borrower</th><th>rule</th><th>severity</th><th>status</th><th>calls</th>
<th>last call</th><th>explanation and evidence</th></tr>
{% for r in d.flags.rows %}<tr><td class="nw">{{ r.borrower_id }}</td><td>{{ r.rule_id }}</td>
<td class="sev-{{ r.severity }}">{{ r.severity }}</td><td>{{ r.status }}</td><td class="n">{{ r.calls|int }}</td>
<td class="nw">{{ r.last_event_at|dt }}</td>
<td>{{ r.explanation }}<div class="evidence">{{ r.evidence }}</div></td></tr>
{% endfor %}</table>
<div class="note">The {{ d.flags.rows|length }} most severe open flags (at most 50), newest first.</div>
{% else %}<p>No open borrower flags.</p>{% endif %}

<h2>Spike alerts</h2>
{% if d.alerts.rows %}<table><tr><th>dimension</th><th>value</th><th>window</th><th>hang-up rate</th>
<th>Wilson low</th><th>baseline</th><th>connected</th><th>explanation</th></tr>
{% for r in d.alerts.rows %}<tr><td>{{ r.dimension }}</td><td>{{ r.value }}</td><td>{{ r.window_start|dt }}</td>
<td class="n">{{ r.hangup_rate|pct }}</td><td class="n">{{ r.wilson_low|pct }}</td>
<td class="n">{{ r.baseline_rate|pct }}</td><td class="n">{{ r.connected|int }}</td><td>{{ r.explanation }}</td></tr>
{% endfor %}</table>{% else %}<p>No spike alert is firing.</p>{% endif %}

<p class="note">Generated by <code>hangwatch report</code> from the same queries as the Grafana panels
(hangwatch/sinks/catalogue). Times in {{ tz }}.</p>
</body></html>
""")


def render(d: ReportData, generated: datetime | None = None) -> str:
    scripts = d.comparisons.get("script_version")
    img = {
        "rates": charts.rates_over_time(d.rates_over_time.rows, d.tz),
        "branches": charts.rate_bars([r["branch"] for r in d.branches.rows],
                                     [r["hangup_rate"] for r in d.branches.rows],
                                     [r["connected"] for r in d.branches.rows], "Hang-up rate (n = connected)"),
        "scripts": charts.rate_bars([r["script_version"] for r in scripts.rows] if scripts else [],
                                    [r["hangup_rate"] for r in scripts.rows] if scripts else [],
                                    [r["connected"] for r in scripts.rows] if scripts else [],
                                    "Hang-up rate by script version (n = connected)"),
        "stages": charts.stage_bars(d.stages.rows),
        "heatmap": charts.heatmap(d.heatmap.rows, d.tz),
    }
    return _TEMPLATE.render(d=d, img=img, tz=d.tz, titles=_COMPARISON_TITLES, min_sample=d.min_connected,
                            generated=generated or datetime.now(tz=UTC))
