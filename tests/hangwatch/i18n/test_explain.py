"""The report's sentence for a firing spike alert names the window of the record itself: the
detector's span of minutes that fired (120 - 600 s), not the configured base window."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hangwatch.i18n.explain import alert_explanation
from hangwatch.i18n.glossary import load_glossary

ROW = {"dimension": "branch", "value": "shanghai-pudong", "window_start": datetime(2026, 12, 3, 2, 0, tzinfo=UTC),
       "connected": 160, "hangup_rate": 0.25, "baseline_rate": 0.15, "wilson_low": 0.19, "explanation": "raw"}


def test_the_alert_sentence_uses_the_span_that_fired() -> None:
    w = load_glossary().words("zh-CN")
    text = alert_explanation(w, {**ROW, "window_size_s": 420}, 60, ZoneInfo("Asia/Shanghai"))
    assert "7 分钟" in text and "10:00" in text and "40" in text  # 420 s; 02:00 UTC is 10:00 in Shanghai
    en = alert_explanation(load_glossary().words("en"), {**ROW, "window_size_s": 420}, 60, UTC)
    assert "in 7 minutes from" in en and "(40/160 connected)" in en


def test_rows_without_a_window_size_use_the_configured_window() -> None:
    w = load_glossary().words("en")
    assert "in 5 minutes from" in alert_explanation(w, ROW, 300, UTC)
    assert alert_explanation(w, {**ROW, "connected": None}, 300, UTC) == "raw"
