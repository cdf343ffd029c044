"""The merchants' stock plan (查看备货) and its download (下载带货单), CSV or XLSX."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import links
from app.db.repositories import campaigns as repo
from app.domain.campaigns.schemas import (
    CampaignContactOut,
    CampaignStockPlanCreator,
    CampaignStockPlanOut,
    CampaignStockPlanRow,
)
from app.domain.campaigns.service import visible_campaign
from app.domain.exports import XLSX, Download, csv_bytes, xlsx_bytes, xlsx_text
from app.state.core import Actor


async def stock_plan(session: AsyncSession, actor: Actor, campaign_id: str) -> CampaignStockPlanOut:
    """The caller's products planned in the campaign's submitted signups, with who plans how
    many, and `at_risk = planned_total > inventory`. (No signup timer needs firing first: an
    expiry only ever moves signups that are not counted.)"""
    campaign, _ = await visible_campaign(session, actor, campaign_id)
    creators: dict[str, list[CampaignStockPlanCreator]] = {}
    for line in await repo.plan_lines(session, campaign.id, actor.id):
        creators.setdefault(line.product_id, []).append(
            CampaignStockPlanCreator(
                creator_id=line.creator_id,
                nickname=line.nickname,
                signup_id=line.signup_id,
                planned_quantity=line.planned_quantity,
                contact=CampaignContactOut(phone=line.contact_phone, wechat=line.contact_wechat),
            )
        )
    items = [
        CampaignStockPlanRow(
            product_id=t.product_id,
            title=t.title,
            inventory=t.inventory,
            planned_total=t.planned_total,
            at_risk=t.planned_total > t.inventory,
            creators=creators.get(t.product_id, []),
        )
        for t in await repo.plan_totals(session, campaign.id, actor.id)
    ]
    path = f"/v1/campaigns/{campaign.id}/stock-plan/export"
    downloads = {f: links.signed(path, actor.id, actor.role, params={"format": f}) for f in ("csv", "xlsx")}
    return CampaignStockPlanOut(campaign_id=campaign.id, items=items, download_urls=downloads)


async def stock_plan_download(session: AsyncSession, actor: Actor, campaign_id: str, format: Literal["csv", "xlsx"]) -> Download:
    plan = await stock_plan(session, actor, campaign_id)
    if format == "xlsx":
        return Download(export_xlsx(plan), XLSX, f"stock-plan-{campaign_id}.xlsx")
    return Download(export_csv(plan), "text/csv; charset=utf-8", f"stock-plan-{campaign_id}.csv")


EXPORT_HEADER = [
    "product_id",
    "product",
    "creator_id",
    "creator",
    "contact_phone",
    "wechat",
    "planned_quantity",
    "inventory",
    "at_risk",
]


def _export_rows(plan: CampaignStockPlanOut) -> list[list[Any]]:
    return [
        [
            row.product_id,
            row.title,
            c.creator_id,
            c.nickname or "",
            c.contact.phone or "",
            c.contact.wechat or "",
            c.planned_quantity,
            row.inventory,
            row.at_risk,
        ]
        for row in plan.items
        for c in row.creators
    ]


def export_csv(plan: CampaignStockPlanOut) -> bytes:
    return csv_bytes(
        EXPORT_HEADER, ([("yes" if v else "no") if isinstance(v, bool) else v for v in r] for r in _export_rows(plan))
    )


_SHEET = "xl/worksheets/sheet1.xml"
_COLUMNS = [chr(ord("A") + i) for i in range(len(EXPORT_HEADER))]


def _sheet_rows(rows: list[list[Any]], first: int) -> str:
    """`<row>` elements as openpyxl's write-only sheet writes them (inline strings, `t="n"`,
    `t="b"`, no cell for None, an empty string as an empty inline string, text through
    `xlsx_text`), built as text: openpyxl spends ~40 µs per cell, which is seconds at 150,000 cells."""
    from xml.sax.saxutils import escape

    out: list[str] = []
    for number, row in enumerate(rows, start=first):
        out.append(f'<row r="{number}">')
        for column, value in zip(_COLUMNS, row, strict=True):
            ref = f"{column}{number}"
            if value is None:
                continue
            if isinstance(value, bool):
                out.append(f'<c r="{ref}" t="b"><v>{int(value)}</v></c>')
            elif isinstance(value, int):
                out.append(f'<c r="{ref}" t="n"><v>{value}</v></c>')
            elif value == "":
                out.append(f'<c r="{ref}" t="inlineStr" />')
            else:
                text = escape(xlsx_text(str(value)))
                space = ' xml:space="preserve"' if text != text.strip() else ""
                out.append(f'<c r="{ref}" t="inlineStr"><is><t{space}>{text}</t></is></c>')
        out.append("</row>")
    return "".join(out)


def export_xlsx(plan: CampaignStockPlanOut) -> bytes:
    """openpyxl builds the workbook with the header row (styles, theme, properties: the same
    package as every other download); the data rows are then written into its sheet as text."""
    import io
    import zipfile

    template = xlsx_bytes("stock plan", EXPORT_HEADER, [])
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(template)) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == _SHEET:
                head, tail = data.decode("utf-8").split("</sheetData>", 1)
                data = (head + _sheet_rows(_export_rows(plan), 2) + "</sheetData>" + tail).encode("utf-8")
            target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()
