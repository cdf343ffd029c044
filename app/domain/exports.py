"""Spreadsheet downloads, one way for every module: CSV in UTF-8 with a BOM (so Excel shows
Chinese correctly) and XLSX with openpyxl. Cells are written as given; modules label their own
booleans and blanks."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Row = Sequence[Any]
CSV = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True, slots=True)
class Download:
    """A file an endpoint answers with (the router only wraps it in a `Response`)."""

    content: bytes
    media_type: str
    filename: str


def csv_bytes(header: Row, rows: Iterable[Row]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")


def _xlsx_cell(value: Any) -> Any:
    """XLSX cannot hold control characters (a reference typed with one would fail the whole
    download): they are dropped from the cell; the CSV keeps the text as given."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value


def xlsx_bytes(sheet_title: str, header: Row, rows: Iterable[Row]) -> bytes:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet(sheet_title)
    sheet.append(list(header))
    for row in rows:
        sheet.append([_xlsx_cell(v) for v in row])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
