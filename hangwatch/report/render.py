"""The report as one self-contained HTML file: inline CSS, charts as data: URIs, no scripts,
no external resources (it is mailed and archived). Every word comes from the glossary
(hangwatch.i18n) in the chosen language; flag and alert explanations are rendered from their
facts (hangwatch.i18n.explain)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from hangwatch.i18n import Words
from hangwatch.i18n.explain import alert_explanation, evidence_lines, flag_explanation, next_action_text
from hangwatch.report import charts, period, remedies
from hangwatch.report.data import ReportData
from hangwatch.report.fonts import use_cjk_font

# Rates (change in percentage points) and counts (change and relative change) of the comparison.
_RATES = ("hangup_rate", "decline_rate", "refusal_rate", "contact_rate")
_COUNTS = ("attempts", "connected", "hung_up", "declined", "refused")


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


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                          loader=jinja2.PackageLoader("hangwatch.report", "templates"))
_ENV.filters.update(pct=_pct, int=_int, dt=_dt)


def comparison(w: Words, current: dict[str, Any], previous: dict[str, Any], raised: int,
               previous_raised: int) -> list[dict[str, str]]:
    """Rows of the comparison with the previous period: label, now, before, change."""
    rows = []
    for key in _COUNTS:
        now, before = int(current.get(key) or 0), int(previous.get(key) or 0)
        rows.append({"label": w.term(key), "now": _int(now), "before": _int(before),
                     "change": period.count_change(w, now, before)})
    rows.append({"label": w.term("flags_raised"), "now": _int(raised), "before": _int(previous_raised),
                 "change": period.count_change(w, raised, previous_raised)})
    for key in _RATES:
        now_r, before_r = current.get(key), previous.get(key)
        rows.append({"label": w.term(key), "now": _pct(now_r), "before": _pct(before_r),
                     "change": period.rate_change(w, now_r, before_r)})
    return rows


def _names(w: Words, kind: str, rows: list[dict[str, Any]], column: str) -> list[str]:
    return [w.name(kind, r[column]) for r in rows]


def _images(d: ReportData, w: Words) -> dict[str, str | None]:
    scripts = d.comparisons["script_version"].rows if "script_version" in d.comparisons else []
    notified = d.comparisons["pre_notified"].rows if "pre_notified" in d.comparisons else []
    missing = w.term("not_available")
    legend = {c: w.term(c.replace("-", "").replace(" ", "_")) for c in
              ("hang-up rate", "decline rate", "refusal rate", "contact rate")}
    return {
        "rates": charts.rates_over_time(d.rates_over_time.rows, d.tz, legend),
        "branches": charts.rate_bars(_names(w, "branch", d.branches.rows, "branch"),
                                     [r["hangup_rate"] for r in d.branches.rows],
                                     [r["connected"] for r in d.branches.rows], w.text("report.chart.branches"),
                                     missing),
        "scripts": charts.rate_bars([str(r["script_version"]) for r in scripts], [r["hangup_rate"] for r in scripts],
                                    [r["connected"] for r in scripts], w.text("report.chart.scripts"), missing),
        "prenotified": charts.rate_bars(_names(w, "pre_notified", notified, "pre_notified"),
                                        [r["hangup_rate"] for r in notified], [r["connected"] for r in notified],
                                        w.text("report.chart.prenotified"), missing),
        "stages": charts.stage_bars(d.stages.rows, _names(w, "stage", d.stages.rows, "stage"),
                                    (w.name("outcome", "hung_up"), w.name("outcome", "refused"))),
        "heatmap": charts.heatmap(d.heatmap.rows, d.tz, _names(w, "branch", d.heatmap.rows, "branch"),
                                  w.text("report.chart.hour_axis", tz=d.tz)),
        "flag_trend": charts.flag_trend(d.flag_trend.rows, d.tz,
                                        {str(r["rule_id"]): w.name("rule", r["rule_id"]) for r in d.flag_trend.rows}),
    }


def render(d: ReportData, w: Words, generated: datetime | None = None, font_file: Any = None) -> str:
    """The report in w's language."""
    use_cjk_font(font_file)
    tz = ZoneInfo(d.tz)
    slots = remedies.best_slot_by_borrower(w, d.flag_segments, d.best_times, d.flags.rows)
    flags = [{**r, "explain": flag_explanation(w, r, d.rules, tz), "evidence_text": evidence_lines(w, r, tz),
              "next_action_text": next_action_text(w, r), "best_slot_text": slots.get(str(r["borrower_id"]), "")}
             for r in d.flags.rows]
    alerts = [{**r, "explain": alert_explanation(w, r, d.alert_window_s, tz)} for r in d.alerts.rows]
    return _ENV.get_template("report.html.j2").render(
        d=d, w=w, img=_images(d, w), tz=d.tz, min_sample=d.min_connected, flags=flags, alerts=alerts,
        title=period.title(w, d.start, d.end, tz), generated=generated or datetime.now(tz=UTC),
        previous_end=d.start, previous_start=d.previous_start or d.start - timedelta(0),
        comparison=comparison(w, d.current, d.previous, d.flags_raised, d.previous_flags_raised),
        rules=d.rules.fingerprint if d.rules else "-", impact=[remedies.view(w, c, tz) for c in d.impact],
        impact_columns=remedies.MAIN_COLUMNS, stratified_columns=remedies.STRATIFIED_COLUMNS,
        best_times=[{"value": w.name("credit_grade", b.value), "slots": remedies.best_slots_text(w, b.best),
                     "judged": sum(s.sufficient for s in b.best.slots), "insufficient": b.best.insufficient}
                    for b in d.best_times],
        best_times_start=d.best_times_start or d.start)
