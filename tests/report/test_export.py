"""The review / re-dial list as XLSX and CSV, read back: ids stay text, local date-times are
real dates, CSV is UTF-8 with a BOM, explanations in the chosen language from the facts."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from hangwatch.exports import review_list, write
from hangwatch.i18n import load_glossary
from hangwatch.streams.core.rules_config import default_rules

TZ = ZoneInfo("Asia/Shanghai")
ZH = load_glossary().words("zh-CN")
EN = load_glossary().words("en")


def _rows() -> list[dict[str, Any]]:
    t = [datetime(2026, 12, 3, 7, 10, tzinfo=UTC), datetime(2026, 12, 3, 7, 30, tzinfo=UTC),
         datetime(2026, 12, 3, 7, 45, tzinfo=UTC)]
    return [{
        "flag_id": "0123456789", "borrower_id": "p-00e12345678901234567890123456789", "loan_id": "000123450001",
        "rule_id": "repeated_refusal", "rule_version": 1, "severity": "medium", "status": "raised", "calls": 3,
        "first_event_at": t[0], "last_event_at": t[2], "explanation": "3 negative outcomes in 7 days: ...",
        "evidence": "[]", "ev_occurred_at": t, "ev_outcome": ["hung_up", "hung_up", "declined"],
        "ev_hangup_stage": ["income_check", "income_check", ""], "ev_agent_id": ["A017", "A017", ""],
        "ev_channel": ["human", "human", "robot"], "ev_script_version": ["v2.4", "v2.4", ""],
        # BorrowerFlag v2's suggestion as stored (migration 0011)
        "next_action": "pre_notify_sms", "next_action_param_names": ["calls"], "next_action_param_values": [3],
    }]


@pytest.fixture
def table_zh() -> Any:
    return review_list(ZH, _rows(), default_rules("Asia/Shanghai"), TZ, "复核名单")


def test_xlsx_keeps_ids_as_text_and_times_as_dates(tmp_path: Path, table_zh: Any) -> None:
    out = tmp_path / "flags.xlsx"
    write(table_zh, out)
    ws = load_workbook(out).worksheets[0]
    headers = [c.value for c in ws[1]]
    assert headers[:3] == ["借款人", "贷款编号", "规则"]
    row = {h: c for h, c in zip(headers, ws[2], strict=True)}
    assert row["借款人"].value == "p-00e12345678901234567890123456789" and row["借款人"].data_type == "s"
    assert row["贷款编号"].value == "000123450001" and row["贷款编号"].data_type == "s"  # leading zeros kept
    assert row["标记编号"].value == "0123456789" and row["标记编号"].number_format == "@"
    assert row["最近通话"].is_date and row["最近通话"].value == datetime(2026, 12, 3, 15, 45)  # local time
    assert row["规则"].value == "多次拒绝/挂断" and row["状态"].value == "已标记" and row["通话次数"].value == 3
    assert row["说明"].value.startswith("7 天内 3 次负面结果：收入核实阶段挂断 2 次、拒接 1 次")
    assert "2026-12-03 15:10 收入核实阶段挂断 人工坐席 A017 [v2.4]" in row["证据"].value
    assert row["建议措施"].value == ZH.text("next_action.pre_notify_sms").format(calls=3)


def test_csv_is_utf8_with_bom_and_excel_keeps_numeric_ids(tmp_path: Path) -> None:
    out = tmp_path / "flags.csv"
    write(review_list(EN, _rows(), default_rules("Asia/Shanghai"), TZ, "review"), out)
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert len(rows) == 1
    r = rows[0]
    assert r["borrower"] == "p-00e12345678901234567890123456789"
    assert r["loan"] == '="000123450001"'  # Excel and WPS show 000123450001 as text
    assert r["last call"] == "2026-12-03 15:45:00"
    assert r["explanation"] == ("3 negative outcomes in 7 days: hung up at income check ×2, declined ×1; "
                                "last call 2026-12-03 15:45")
    assert r["outcomes"] == "hung up ×2, declined ×1" and r["channels"] == "human agent ×2, robot dialler ×1"


def test_rows_without_evidence_arrays_fall_back_to_the_stored_sentence(tmp_path: Path) -> None:
    row = {**_rows()[0], "ev_outcome": [], "ev_occurred_at": [], "evidence": '[{"outcome": "hung_up"}]'}
    t = review_list(ZH, [row], default_rules(), TZ, "x")
    values = dict(zip(t.headers, t.rows[0], strict=True))
    assert values["说明"] == row["explanation"] and values["证据"] == row["evidence"]


def test_unknown_format_is_refused(tmp_path: Path, table_zh: Any) -> None:
    with pytest.raises(ValueError, match=r"\.xlsx or \.csv"):
        write(table_zh, tmp_path / "flags.pdf")
