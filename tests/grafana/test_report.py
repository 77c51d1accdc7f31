"""The risk report rendered from the fixture store, in both languages: content, sample sizes,
the comparison with the previous period, self-containment, Chinese from the glossary only."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from hangwatch.i18n import load_glossary
from hangwatch.platform.settings import Settings
from hangwatch.report.data import ReportData, collect
from hangwatch.report.render import render
from hangwatch.sinks.backends.base import Backend
from tests.grafana.pipeline_fixture import END, SPIKE_BRANCH, START, Fixture

EN = load_glossary().words("en")
ZH = load_glossary().words("zh-CN")
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]+")


@pytest.fixture(scope="module")
def data(backend: Backend, fixture_db: Fixture) -> ReportData:
    return collect(backend, Settings(), fixture_db.db, START, END)


@pytest.fixture(scope="module")
def html(data: ReportData) -> str:
    return render(data, EN, generated=END)


@pytest.fixture(scope="module")
def html_zh(data: ReportData) -> str:
    return render(data, ZH, generated=END)


def test_content(html: str, fixture_db: Fixture) -> None:
    assert '<html lang="en">' in html
    assert "Hang-up risk report (4 hours)" in html  # a title that fits the period, not "daily"
    assert f"{len(fixture_db.events):,}" in html  # attempts KPI
    for branch in {e.branch for e in fixture_db.events}:
        assert EN.name("branch", branch) in html
    for version in {e.script_version for e in fixture_db.events if e.script_version}:
        assert f"<td>{version}</td>" in html
    assert "Agents with the highest hang-up rate" in html and "agent-" in html
    assert f"<td>{EN.name('branch', SPIKE_BRANCH)}</td>" in html and "55.0%" in html  # the firing alert
    open_ids = {f["borrower_id"] for f in fixture_db.flags}
    shown = set(re.findall(r'<td class="nw">(b-[0-9a-f]+)</td>', html))
    assert shown and shown <= open_ids
    assert "no answer" in html or "declined" in html  # evidence lines
    assert "at least 30 connected calls" in html  # alerts.min_connected
    assert "Compared with the previous period" in html


def test_chinese_report(html_zh: str, fixture_db: Fixture) -> None:
    assert '<html lang="zh-CN">' in html_zh
    assert "挂断风险报告（4 小时）" in html_zh
    for branch in {e.branch for e in fixture_db.events}:
        assert f"<td>{ZH.name('branch', branch)}</td>" in html_zh
    assert "与上一周期对比" in html_zh and "个百分点" in html_zh
    assert "天内" in html_zh or "未接通拨打" in html_zh or "静默时段" in html_zh  # flag explanations from facts
    assert "挂断率" in html_zh and "Hang-up" not in html_zh
    # each flag's suggested next action (BorrowerFlag v2), in Chinese
    assert f"<th>{ZH.term('next_action')}</th>" in html_zh
    suggestions = {code: ZH.name("next_action", code) for code in ZH.glossary.names["next_action"]}
    texts = [t.split("{")[0] for key, t in ((k, e["zh-CN"]) for k, e in ZH.glossary.text.items())
             if key.startswith("next_action.")]
    assert any(t and t in html_zh for t in texts) or any(n in html_zh for n in suggestions.values())


def test_every_chinese_text_comes_from_the_glossary(html_zh: str) -> None:
    """Each run of Chinese in the page is made of the glossary's own runs (filled placeholders
    join them): no word of the report is written anywhere but the glossary."""
    pieces = {run for e in load_glossary().entries() for run in CJK.findall(e["zh-CN"])}

    def made_of_pieces(run: str) -> bool:
        ok = [True] + [False] * len(run)
        for i in range(1, len(run) + 1):
            ok[i] = any(ok[j] and run[j:i] in pieces for j in range(i))
        return ok[-1]

    runs = set(CJK.findall(html_zh))
    assert runs
    assert not [r for r in runs if not made_of_pieces(r)]


def test_title_fits_the_period() -> None:
    from zoneinfo import ZoneInfo

    from hangwatch.report.period import title

    tz = ZoneInfo("Asia/Shanghai")
    assert title(ZH, START, START + timedelta(hours=1), tz) == "挂断风险小时报"
    assert title(ZH, START, START + timedelta(days=1), tz) == "挂断风险日报"
    assert title(EN, START, START + timedelta(days=7), tz) == "Weekly hang-up risk report"
    assert title(EN, START, START + timedelta(days=30), tz) == "Monthly hang-up risk report"
    assert title(EN, START, START + timedelta(hours=6), tz) == "Hang-up risk report (6 hours)"


def test_comparison_with_the_previous_period(data: ReportData) -> None:
    assert data.previous_start == START - (END - START)
    assert int(data.current["attempts"]) == int(data.summary["attempts"])
    # the fixture has no calls before START (ranges include both ends, as Grafana's: calls at START count)
    assert int(data.previous.get("attempts") or 0) < int(data.current["attempts"]) / 100
    from hangwatch.report.render import comparison

    rows = {r["label"]: r for r in comparison(EN, {"attempts": 120, "hangup_rate": 0.2},
                                              {"attempts": 100, "hangup_rate": 0.15}, 3, 1)}
    assert rows["attempts"]["change"] == "+20 (+20.0%)"
    assert rows["hang-up rate"]["change"] == "+5.0 pp"
    assert rows["flags raised"]["change"] == "+2 (+200.0%)"


def test_minimum_sample_and_zone_come_from_the_settings(backend: Backend, fixture_db: Fixture) -> None:
    s = Settings(alerts={"min_connected": 50}, timezone="UTC")  # type: ignore[arg-type]
    data = collect(backend, s, fixture_db.db, START, END)
    assert data.min_connected == 50 and data.tz == "UTC"
    assert data.agents.rows and all(r["connected"] >= 50 for r in data.agents.rows)
    page = render(data, EN, generated=END)
    assert "at least 50 connected calls" in page and "(UTC)" in page


def test_self_contained(html: str) -> None:
    assert html.count('src="data:image/png;base64,') == 7
    assert not re.search(r'(src|href)="(https?:)?//', html), "no external resources"
    assert "<script" not in html


def test_report_has_no_sql_of_its_own() -> None:
    from hangwatch.report import data

    source = Path(data.__file__).read_text(encoding="utf-8")
    assert "SELECT" not in source, "the report runs the catalogue's queries"


def test_intervention_impact_and_best_times(data: ReportData, html: str, html_zh: str, fixture_db: Fixture) -> None:
    """The remedies sections (docs/analytics.md): the natural pairs and the two busiest script
    versions judged on the period's calls, the best slots per credit grade with the minimum
    sample, and beside each open flag the best slots of the borrower's credit grade."""
    from hangwatch.report.remedies import RATES

    period = [e for e in fixture_db.events if START.timestamp() <= e.occurred_at_ms / 1000 < END.timestamp()]
    by = {c.factor: c for c in data.impact}
    assert {"script_version", "pre_notified", "channel"} <= set(by)
    notified = by["pre_notified"]
    assert (notified.a, notified.b) == (("false",), ("true",))
    for r in notified.rates:
        k, n = RATES[r.rate]
        for group, pre in ((r.result.successes_a, False), (r.result.successes_b, True)):
            calls = [e for e in period if e.pre_notified is pre]
            count = {"hung_up": sum(e.outcome == "hung_up" for e in calls),
                     "declined": sum(e.outcome == "declined" for e in calls),
                     "connected": sum(e.outcome in ("completed", "hung_up", "refused", "wrong_party") for e in calls)}
            assert group == count[k], (r.rate, pre, n)
    assert data.best_times and any(b.best.recommended for b in data.best_times)
    assert all(s.attempts >= 200 for b in data.best_times for s in b.best.recommended)  # analytics' minimum
    assert "Intervention impact: is a difference real?" in html and "Cochran-Mantel-Haenszel" in html
    assert "Best time to call, by credit grade" in html and "at least 200 attempts" in html
    assert "best slots for credit grade" in html
    assert "干预效果：差异是否真实" in html_zh and "最佳拨打时段（按信用等级）" in html_zh and "设计效应" in html_zh
