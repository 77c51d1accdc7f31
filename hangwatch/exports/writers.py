"""Write a ReviewList as XLSX (openpyxl) or CSV, the way a Chinese office's Excel and WPS open
them: ids as text (never numbers that lose leading zeros or turn into 1.2E+17), local
date-times as real date cells, CSV in UTF-8 with a BOM (without it Excel reads GBK and garbles
Chinese)."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from hangwatch.exports.review import ReviewList

DATETIME_FORMAT: Final = "yyyy-mm-dd hh:mm:ss"
# Text a spreadsheet would read as a number (and so change): digits, decimals, exponents.
_NUMERIC: Final = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _csv(table: ReviewList, path: Path) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        out = csv.writer(f)
        out.writerow(table.headers)
        for row in table.rows:
            out.writerow([_csv_cell(v, kind) for v, kind in zip(row, table.kinds, strict=True)])


def _csv_cell(v: Any, kind: str) -> str:
    if v is None:
        return ""
    if kind == "time":
        return str(v.strftime("%Y-%m-%d %H:%M:%S"))  # Excel and WPS read this as a date-time
    text = str(v)
    if kind == "id" and _NUMERIC.match(text):
        return f'="{text}"'  # the one CSV form Excel and WPS keep as text
    return text


def _xlsx(table: ReviewList, path: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = table.sheet[:31]
    ws.append(table.headers)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in table.rows:
        ws.append(row)
    widths = [len(h) + 4 for h in table.headers]
    for col, kind in enumerate(table.kinds, start=1):
        for (cell,) in ws.iter_rows(min_row=2, min_col=col, max_col=col):
            if kind == "id":
                cell.number_format = "@"  # text: the value is stored as a string already
            elif kind == "time" and cell.value is not None:
                cell.number_format = DATETIME_FORMAT
            if isinstance(cell.value, str) and "\n" in cell.value:
                cell.alignment = Alignment(wrap_text=True, vertical="top")
            width = 20 if kind == "time" else max(len(line) for line in str(cell.value or "").split("\n")) + 2
            widths[col - 1] = min(max(widths[col - 1], width), 60)
    for col, width in enumerate(widths, start=1):
        ws.column_dimensions[ws.cell(1, col).column_letter].width = width
    ws.freeze_panes = "B2"
    ws.auto_filter.ref = ws.dimensions
    wb.properties.title = table.title
    about = wb.create_sheet("about")
    about.append([table.title])
    wb.save(path)


FORMATS: Final[dict[str, Callable[[ReviewList, Path], None]]] = {".xlsx": _xlsx, ".csv": _csv}


def write(table: ReviewList, path: Path) -> None:
    """Write by the file's suffix (.xlsx or .csv); ValueError for another suffix."""
    try:
        writer = FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"unknown export format {path.suffix!r}; use {' or '.join(FORMATS)}") from None
    writer(table, path)
