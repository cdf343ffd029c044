"""Spreadsheet downloads, one way for every module: CSV in UTF-8 with a BOM (so Excel shows
Chinese correctly) and XLSX with openpyxl. Numbers, booleans and blanks are written as given
(modules label their own booleans and blanks); text goes through `as_text`, so no cell of any
download can be read as a formula (security.md, "Downloads that cannot run code")."""

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


# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection"): `=`, `+`, `-`,
# `@`, and a tab or carriage return (which some programs skip before looking for one).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def as_text(value: str) -> str:
    """Text that a spreadsheet shows as text: a leading `'` when it could start a formula. Every
    text cell of every CSV and XLSX the service writes goes through here."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _csv_cell(value: Any) -> Any:
    return as_text(value) if isinstance(value, str) else value


def csv_bytes(header: Row, rows: Iterable[Row]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([_csv_cell(v) for v in header])
    writer.writerows([_csv_cell(v) for v in row] for row in rows)
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")


def xlsx_text(value: str) -> str:
    """A text cell's content in an XLSX: control characters dropped (XLSX cannot hold them; a
    reference typed with one would fail the whole download; the CSV keeps them), then `as_text`
    (dropping first, so a control character cannot hide a leading `=`)."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return as_text(ILLEGAL_CHARACTERS_RE.sub("", value))


def _xlsx_cell(sheet: Any, value: Any) -> Any:
    """A cell: text typed as a string (`t="inlineStr"`), never a formula, whatever it starts with."""
    if not isinstance(value, str):
        return value
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(sheet, value=xlsx_text(value))
    cell.data_type = "s"
    return cell


def xlsx_bytes(sheet_title: str, header: Row, rows: Iterable[Row]) -> bytes:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet(sheet_title)
    sheet.append([_xlsx_cell(sheet, v) for v in header])
    for row in rows:
        sheet.append([_xlsx_cell(sheet, v) for v in row])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
