"""The risk report rendered from the fixture store: content, sample sizes, self-containment."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from hangwatch.cli.report import parse_when
from hangwatch.report.data import collect, for_database, interval_for
from hangwatch.report.render import render
from hangwatch.sinks.backends.embedded import EmbeddedBackend
from tests.grafana.pipeline_fixture import END, SPIKE_BRANCH, START, Fixture


@pytest.fixture(scope="module")
def html(chdb_backend: EmbeddedBackend, fixture_db: Fixture) -> str:
    return render(collect(chdb_backend, fixture_db.db, START, END), 30, generated=END)


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


def test_self_contained(html: str) -> None:
    assert html.count('src="data:image/png;base64,') == 5
    assert not re.search(r'(src|href)="(https?:)?//', html), "no external resources"
    assert "<script" not in html


def test_report_sql_is_the_panels_sql() -> None:
    from pathlib import Path

    from hangwatch.grafana import sql
    from hangwatch.report import data

    source = Path(data.__file__).read_text(encoding="utf-8")
    assert "SELECT" not in source, "the report has no SQL of its own"
    assert for_database(sql.LIVE_SUMMARY, "other").count("other.call_events") == 1


def test_helpers() -> None:
    now = datetime(2026, 5, 2, 12, tzinfo=UTC)
    assert parse_when("24h", now) == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert parse_when("2026-05-01T08:00+08:00", now) == datetime(2026, 5, 1, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="duration"):
        parse_when("yesterday", now)
    assert interval_for(START, END) == 180  # 4 h / 96 points, whole minutes
