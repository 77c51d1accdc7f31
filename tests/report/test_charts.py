"""Charts render Chinese: every chart of the report drawn with Chinese branch names, stages and
legends, failing on any glyph-missing warning (DejaVu Sans, matplotlib's default, has no CJK)."""

from __future__ import annotations

import base64
import logging
import warnings
from datetime import UTC, datetime, timedelta

import pytest

from hangwatch.i18n import load_glossary
from hangwatch.report import charts
from hangwatch.report.fonts import use_cjk_font

ZH = load_glossary().words("zh-CN")
BRANCHES = ["shanghai-pudong", "beijing-haidian", "guangzhou-tianhe", "chengdu-jinjiang"]


@pytest.fixture
def no_missing_glyphs(caplog: pytest.LogCaptureFixture) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)"
        with caplog.at_level(logging.WARNING, logger="matplotlib"):
            yield
    assert not [r for r in caplog.records if "missing" in r.getMessage().lower()]


def _png(b64: str | None) -> bytes:
    assert b64 is not None
    data = base64.b64decode(b64)
    assert data.startswith(b"\x89PNG")
    return data


def test_the_font_has_chinese_glyphs() -> None:
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    name = use_cjk_font()
    path = font_manager.findfont(font_manager.FontProperties(family=name), fallback_to_default=False)
    font = FT2Font(path)
    for ch in "".join(ZH.name("branch", b) for b in BRANCHES) + "挂断率话术提前告知":
        assert font.get_char_index(ord(ch)), f"{name} has no glyph for {ch}"


def test_charts_with_chinese_names_render_without_missing_glyphs(no_missing_glyphs: object) -> None:
    use_cjk_font()
    names = [ZH.name("branch", b) for b in BRANCHES]
    assert names[0] == "上海浦东"
    _png(charts.rate_bars(names, [0.2, 0.31, None, 0.1], [120, 80, 0, 40], ZH.text("report.chart.branches"),
                          ZH.term("not_available")))
    hours = {f"{h:02d}": 0.1 + h / 100 for h in range(24)}
    _png(charts.heatmap([{"branch": b, **hours} for b in BRANCHES], "Asia/Shanghai", names,
                        ZH.text("report.chart.hour_axis", tz="Asia/Shanghai")))
    _png(charts.stage_bars([{"stage": "income_check", "hung_up": 5, "refused": 2}], [ZH.name("stage", "income_check")],
                           (ZH.name("outcome", "hung_up"), ZH.name("outcome", "refused"))))
    t0 = datetime(2026, 12, 3, tzinfo=UTC)
    rows = [{"time": t0 + timedelta(minutes=5 * i), "hang-up rate": 0.2, "decline rate": 0.1, "refusal rate": 0.05,
             "contact rate": 0.7} for i in range(6)]
    legend = {c: ZH.term(c.replace("-", "").replace(" ", "_")) for c in rows[0] if c != "time"}
    _png(charts.rates_over_time(rows, "Asia/Shanghai", legend))
    _png(charts.flag_trend([{"time": t0, "rule_id": "repeated_refusal", "raised": 3}], "Asia/Shanghai",
                           {"repeated_refusal": ZH.name("rule", "repeated_refusal")}))


def test_a_missing_font_file_says_what_to_install(tmp_path: object) -> None:
    from pathlib import Path

    from hangwatch.report.fonts import FontMissing

    with pytest.raises(FontMissing, match="fonts-noto-cjk"):
        use_cjk_font(Path(str(tmp_path)) / "none.ttf")
