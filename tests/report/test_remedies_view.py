"""The remedies in words: a flagged borrower's credit-grade best slots beside the suggested action
(report and review list), and a comparison's rows and notes (CLI and report), in both languages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hangwatch.analytics import stats
from hangwatch.exports import review_list
from hangwatch.i18n import load_glossary
from hangwatch.report import remedies
from hangwatch.streams.core.rules_config import default_rules
from tests.report.test_export import _rows

ZH = load_glossary().words("zh-CN")
EN = load_glossary().words("en")
TZ = ZoneInfo("Asia/Shanghai")
BORROWER = _rows()[0]["borrower_id"]


def _best() -> list[remedies.SegmentBestTimes]:
    good = [stats.SlotCounts(1, 10, 400, 300, 30), stats.SlotCounts(3, 15, 400, 250, 40),
            stats.SlotCounts(0, 12, 400, 100, 60)]
    few = [stats.SlotCounts(1, 10, 20, 10, 1)]
    return [remedies.SegmentBestTimes("credit_grade", "AA", stats.best_times(good, top=2)),
            remedies.SegmentBestTimes("credit_grade", "C", stats.best_times(few))]


def test_best_slot_beside_each_open_flag() -> None:
    flags = [{"borrower_id": "b1", "status": "raised"}, {"borrower_id": "b2", "status": "resolved"},
             {"borrower_id": "b3", "status": "escalated"}, {"borrower_id": "b4", "status": "raised"}]
    segments = {"b1": {"credit_grade": "AA"}, "b2": {"credit_grade": "AA"}, "b3": {"credit_grade": "C"}}
    zh = remedies.best_slot_by_borrower(ZH, segments, _best(), flags)
    assert zh == {"b1": "信用等级 AA 的最佳时段：周二 10:00–11:00、周四 15:00–16:00",
                  "b3": "信用等级 C 的最佳时段：样本不足（没有时段达到拨打 200 次、接通 50 次）"}
    en = remedies.best_slot_by_borrower(EN, segments, _best(), flags)
    assert en["b1"] == "best slots for credit grade AA: Tue 10:00–11:00, Thu 15:00–16:00"


def test_review_list_has_the_best_slot_column() -> None:
    t = review_list(EN, _rows(), default_rules("Asia/Shanghai"), TZ, "review", {BORROWER: "Tue 10:00–11:00"})
    column = t.headers.index("best slot")
    assert t.headers[column - 1] == "next action" and t.rows[0][column] == "Tue 10:00–11:00"
    assert review_list(EN, _rows(), default_rules(), TZ, "review").rows[0][column] == ""


def test_comparison_view_rows_and_notes() -> None:
    rates = []
    for rate, (_k, n) in remedies.RATES.items():
        result = stats.compare_proportions(120, 400, 90, 400, design_effect=1.2)
        strata = [stats.Stratum("AA × x", 60, 200, 40, 200), stats.Stratum("C × x", 60, 200, 50, 200)]
        rates.append(remedies.RateComparison(rate, n, result, 1000, stats.cmh(strata, design_effect=1.2)))
    start = datetime(2026, 11, 17, 16, tzinfo=UTC)
    mix = stats.mix_shift({"AA × x": 500, "C × x": 500}, {"AA × x": 700, "C × x": 300})
    c = remedies.Comparison("rollout", "period", ("before",), ("after",), (start, start + timedelta(days=14)),
                            (start + timedelta(days=14), start + timedelta(days=28)), {}, rates,
                            dict.fromkeys(remedies.RATES, 1.2), "estimated", ("credit_grade", "campaign"), mix,
                            0.2, 0.95, 0.8)
    v = remedies.view(EN, c, TZ)
    assert v.title == "Before and after the rollout at 2026-12-02 00:00 +0800"
    assert v.a == "before, 2026-11-18 00:00 +0800 – 2026-12-02 00:00 +0800"
    row = v.rows[0]
    assert (row["rate"], row["a"], row["b"], row["difference"]) == ("hang-up rate", "30.0% (120/400)",
                                                                    "22.5% (90/400)", "-7.5")
    assert row["needed"] == "1,000 connected" and row["deff"] == "1.20" and row["strata_used"] == "2"
    assert set(remedies.MAIN_COLUMNS) | set(remedies.STRATIFIED_COLUMNS) <= set(row) <= set(v.headers)
    assert any(n.startswith("Warning: the credit grade × campaign mix shifted") and "C × x" in n for n in v.notes)
    assert any("design effect estimated from the borrowers' calls" in n and "1.20" in n for n in v.notes)
    zh = remedies.view(ZH, c, TZ)
    assert zh.rows[0]["rate"] == "挂断率" and any(n.startswith("警告") for n in zh.notes)
