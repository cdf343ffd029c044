"""The statements as a file: one line per statement line (CSV in UTF-8 with a BOM, or XLSX)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.repositories import incentives as repo
from app.domain.exports import CSV, XLSX, Download, csv_bytes, xlsx_bytes
from app.state.core import Actor

EXPORT_COLUMNS = [
    "statement_id",
    "program_id",
    "provider_id",
    "month",
    "state",
    "eligible",
    "reasons",
    "active_merchants",
    "dimension",
    "merchant_id",
    "gmv_prev_fen",
    "gmv_fen",
    "increment_fen",
    "tier",
    "amount_fen",
    "total_fen",
]


async def export_rows(session: AsyncSession, actor: Actor, month: str | None) -> list[list[Any]]:
    """One line per voucher line of each statement (a statement with none gets one line)."""
    out: list[list[Any]] = []
    for s in await repo.statements_for_export(session, actor.role, actor.id, month):
        head = [s.id, s.program_id, s.provider_id, s.month, s.state, s.eligible, ";".join(s.reasons), s.active_merchants]
        lines = [
            [1, d["merchant_id"], d["gmv_prev_fen"], d["gmv_fen"], d["increment_fen"], None, d["voucher_fen"]]
            for d in s.dimension1
        ]
        lines += [[2, d["merchant_id"], None, None, None, d["tier"], d["reward_fen"]] for d in s.dimension2]
        for line in lines or [[None] * 7]:
            out.append(head + line + [s.total_fen])
    return out


def to_csv(rows: list[list[Any]]) -> bytes:
    return csv_bytes(
        EXPORT_COLUMNS,
        (["" if v is None else ("true" if v is True else "false" if v is False else v) for v in row] for row in rows),
    )


def to_xlsx(rows: list[list[Any]]) -> bytes:
    return xlsx_bytes("statements", EXPORT_COLUMNS, rows)


async def statements_download(session: AsyncSession, actor: Actor, month: str | None, format: str) -> Download:
    rows = await export_rows(session, actor, month)
    name = f"incentive-statements-{month or 'all'}.{format}"
    if format == "xlsx":
        return Download(to_xlsx(rows), XLSX, name)
    return Download(to_csv(rows), CSV, name)
