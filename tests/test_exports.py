"""The shared spreadsheet writers."""

from __future__ import annotations

import io

from openpyxl import load_workbook

from app.domain.exports import csv_bytes, xlsx_bytes


def test_csv_has_a_bom_and_keeps_text():
    data = csv_bytes(["参考", "金额"], [["转账\x01备注", 100]])
    assert data.startswith(b"\xef\xbb\xbf")
    assert "转账\x01备注" in data.decode("utf-8-sig")


def test_xlsx_drops_control_characters_instead_of_failing():
    data = xlsx_bytes("sheet", ["参考", "金额"], [["转账\x01备注\x1f", 100], [None, True]])
    rows = list(load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True))
    assert rows == [("参考", "金额"), ("转账备注", 100), (None, True)]
