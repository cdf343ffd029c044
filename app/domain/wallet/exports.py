"""The top-ups as CSV / XLSX downloads."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.times import iso_z
from app.db.repositories import wallet as repo
from app.domain.exports import CSV, XLSX, Download, csv_bytes, xlsx_bytes
from app.state import clock
from app.state.core import Actor
from app.state.timers import fire_due_of

EXPORT_LIMIT = 50_000
_STATE_LABELS = {"pending": "待确认", "succeeded": "成功", "rejected": "已驳回", "expired": "已过期"}
_METHOD_LABELS = {"online": "在线支付", "bank_transfer": "对公转账"}
EXPORT_HEADER = [
    "充值单号 id",
    "账户 account_id",
    "金额(元) amount_yuan",
    "金额(分) amount_fen",
    "方式 method",
    "状态 state",
    "参考号 reference",
    "创建时间 created_at",
    "处理时间 decided_at",
]


async def export_rows(session: AsyncSession, actor: Actor, *, state: str | None, account_id: str | None) -> list[list[object]]:
    rows = await repo.top_ups_for_export(session, actor.role, actor.id, state=state, account_id=account_id, limit=EXPORT_LIMIT)
    if await fire_due_of(session, "top_up", [r.id for r in rows]):  # the rows as of now
        rows = await repo.top_ups_for_export(
            session, actor.role, actor.id, state=state, account_id=account_id, limit=EXPORT_LIMIT
        )
    return [
        [
            r.id,
            r.account_id,
            Decimal(r.amount_fen).scaleb(-2),  # yuan to the fen: "12.30" in the CSV, a number in the XLSX
            r.amount_fen,
            _METHOD_LABELS.get(r.method, r.method),
            _STATE_LABELS.get(r.state, r.state),
            r.reference or "",
            iso_z(r.created_at),
            iso_z(r.decided_at) if r.decided_at else "",
        ]
        for r in rows
    ]


def to_csv(rows: list[list[object]]) -> bytes:
    return csv_bytes(EXPORT_HEADER, rows)


def to_xlsx(rows: list[list[object]]) -> bytes:
    return xlsx_bytes("充值记录", EXPORT_HEADER, rows)


async def top_ups_download(
    session: AsyncSession, actor: Actor, format: str, *, state: str | None, account_id: str | None
) -> Download:
    """The recharge history as a file named for today (business calendar)."""
    rows = await export_rows(session, actor, state=state, account_id=account_id)
    stamp = clock.local_date(await clock.now(session)).isoformat()
    if format == "xlsx":
        return Download(to_xlsx(rows), XLSX, f"top-ups-{stamp}.xlsx")
    return Download(to_csv(rows), CSV, f"top-ups-{stamp}.csv")
