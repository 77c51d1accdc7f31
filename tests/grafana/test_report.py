"""The risk report rendered from the fixture store: content, sample sizes, self-containment."""

from __future__ import annotations

import re

import pytest

from hangwatch.platform.settings import Settings
from hangwatch.report.data import collect
from hangwatch.report.render import render
from hangwatch.sinks.backends.base import Backend
from tests.grafana.pipeline_fixture import END, SPIKE_BRANCH, START, Fixture


@pytest.fixture(scope="module")
def html(backend: Backend, fixture_db: Fixture) -> str:
    return render(collect(backend, Settings(), fixture_db.db, START, END), generated=END)


def test_content(html: str, fixture_db: Fixture) -> None:
    assert "Hang-up risk report" in html
    assert f"{len(fixture_db.events):,}" in html  # attempts KPI
    for branch in {e.branch for e in fixture_db.events}:
        assert branch in html
    for version in {e.script_version for e in fixture_db.events if e.script_version}:
        assert f"<td>{version}</td>" in html
    assert "Agents with the highest hang-up rate" in html and "agent-" in html
    assert f"<td>{SPIKE_BRANCH}</td>" in html and "55.0%" in html  # the firing alert
    assert "beijing-haidian</td><td>2025" not in html  # the resolved alert is not listed
    open_ids = {f["borrower_id"] for f in fixture_db.flags}
    shown = set(re.findall(r'<td class="nw">(b-[0-9a-f]+)</td>', html))
    assert shown and shown <= open_ids
    assert "no_answer" in html or "declined" in html  # evidence lines
    assert "at least 30 connected calls" in html  # alerts.min_connected


def test_minimum_sample_and_zone_come_from_the_settings(backend: Backend, fixture_db: Fixture) -> None:
    s = Settings(alerts={"min_connected": 50}, worker={"timezone": "UTC"})  # type: ignore[arg-type]
    data = collect(backend, s, fixture_db.db, START, END)
    assert data.min_connected == 50 and data.tz == "UTC"
    assert data.agents.rows and all(r["connected"] >= 50 for r in data.agents.rows)
    page = render(data, generated=END)
    assert "at least 50 connected calls" in page and "(UTC)" in page


def test_self_contained(html: str) -> None:
    assert html.count('src="data:image/png;base64,') == 5
    assert not re.search(r'(src|href)="(https?:)?//', html), "no external resources"
    assert "<script" not in html


def test_report_has_no_sql_of_its_own() -> None:
    from pathlib import Path

    from hangwatch.report import data

    source = Path(data.__file__).read_text(encoding="utf-8")
    assert "SELECT" not in source, "the report runs the catalogue's queries"
