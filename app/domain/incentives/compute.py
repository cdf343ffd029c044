"""The monthly computation (set-based SQL in `app/db/repositories/incentives_compute.py`;
Python only loops over its result rows, providers and merchants) and the publication that
issues vouchers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.i18n import msg
from app.core.times import iso_z
from app.db.base import id_for
from app.db.bulk import Part, insert_together
from app.db.models.incentives import IncentiveStatement, TierAward, Voucher
from app.db.repositories import incentives as repo
from app.db.repositories import incentives_compute as compute_repo
from app.db.repositories.incentives import ProgramRecord, StatementRecord
from app.db.repositories.incentives_compute import MonthWindow
from app.domain.incentives.months import month_start, parse_month, shift_month, voucher_expiry
from app.domain.incentives.schemas import MonthResult, StatementOut
from app.domain.incentives.service import statement_out
from app.domain.schemas import PageOut
from app.state import clock
from app.state.core import SYSTEM, Actor
from app.state.incentive_statement import INCENTIVE_STATEMENT
from app.state.timers import new_timer
from app.state.voucher import VOUCHER

Progress = Callable[[int, int], Any]
OUTBOX_BATCH = 1000  # new drafts' history rows, events and recipients per statement


def merged(parts: Iterable[Part]) -> list[Part]:
    """Parts of one table joined into one (rows of a table share their keys), in the order each
    table first appears: several entities' rows as one part per table for one write."""
    tables: dict[str, Part] = {}
    for table, rows in parts:
        if rows:
            tables.setdefault(table.name, (table, []))[1].extend(rows)
    return list(tables.values())


async def _program_for_month(session: AsyncSession, program_id: str, month: str) -> ProgramRecord:
    parse_month(month)
    program = await repo.lock_program(session, program_id)  # serialises compute and publish of a program
    if program is None:
        raise NotFound("no such program")
    if not program.month_from <= month <= program.month_to:
        raise ValidationFailed(
            msg(
                "{month} is outside the program ({month_from}..{month_to})",
                month=month,
                month_from=program.month_from,
                month_to=program.month_to,
            ),
            loc=["path", "month"],
            code="month_outside_program",
        )
    return program


def _window(program: ProgramRecord, month: str) -> MonthWindow:
    b1, b2, b3 = (shift_month(month, -i) for i in (1, 2, 3))
    return MonthWindow(
        month=month,
        year=int(month[:4]),
        start=month_start(month),
        end=month_start(shift_month(month, 1)),
        previous_start=month_start(b1),
        months_before=(b1, b2, b3),
        min_active=program.min_active_merchants,
    )


async def compute_month(session: AsyncSession, program_id: str, month: str, progress: Progress | None = None) -> MonthResult:
    """Compute (or recompute) every provider's draft statement of `month` with set-based SQL.
    `progress(done, total)` is called while the statements are written (for a CLI bar)."""
    now = await clock.now(session)
    program = await _program_for_month(session, program_id, month)
    window = _window(program, month)
    if now < window.end:
        raise Conflict(msg("{month} is not over yet", month=month), code="month_not_over")
    existing = {s.provider_id: s for s in await repo.lock_month_statements(session, program_id, month)}
    if any(s.state == "published" for s in existing.values()):
        raise Conflict(msg("{month} is already published", month=month), code="month_published")
    await compute_repo.tune_for_batch(session)
    if existing:  # the drafts' dimension-2 counts are recomputed
        await compute_repo.delete_month_awards(session, program_id, month)

    providers = await compute_repo.providers_active_in(session, window)
    dimension1: dict[str, list[dict]] = {}
    for line in await compute_repo.dimension1_lines(session, window):
        increment = max(0, line.gmv_fen - line.gmv_prev_fen)
        dimension1.setdefault(line.provider_id, []).append(
            {
                "merchant_id": line.merchant_id,
                "gmv_prev_fen": line.gmv_prev_fen,
                "gmv_fen": line.gmv_fen,
                "increment_fen": increment,
                "voucher_fen": increment * program.coefficient_bp // 10000,
            }
        )
    dimension2: dict[str, list[dict]] = {}
    for jump in await compute_repo.dimension2_jumps(session, window):
        reward = program.v4_reward_fen if jump.tier == 4 else program.v3_reward_fen
        dimension2.setdefault(jump.provider_id, []).append(
            {"merchant_id": jump.merchant_id, "tier": jump.tier, "reward_fen": reward}
        )

    # the drafts: new ones inserted together (their history rows and events in bulk), the
    # existing ones updated in place, in one executemany each
    new_rows: list[dict] = []
    outbox: list[Part] = []
    updated: list[dict] = []
    awards: list[dict] = []
    total_all = eligible_count = 0
    total = len(providers)
    for done, p in enumerate(providers, start=1):
        reasons: list[str] = []
        if not p.certified:
            reasons.append("not_certified")
        if p.active < program.min_active_merchants:
            reasons.append("too_few_active_merchants")
        eligible = not reasons
        lines1 = dimension1.get(p.provider_id, []) if eligible else []
        lines2 = dimension2.get(p.provider_id, []) if eligible else []
        total_fen = sum(line["voucher_fen"] for line in lines1) + sum(line["reward_fen"] for line in lines2)
        values = {
            "eligible": eligible,
            "reasons": reasons,
            "active_merchants": p.active,
            "dimension1": lines1,
            "dimension2": lines2,
            "total_fen": total_fen,
            "computed_at": now,
        }
        draft = existing.get(p.provider_id)
        if draft is None:
            row, parts = INCENTIVE_STATEMENT.creation(
                {
                    **values,
                    "id": id_for(IncentiveStatement),
                    "program_id": program_id,
                    "provider_id": p.provider_id,
                    "month": month,
                    "published_at": None,
                },
                SYSTEM,
                now,
            )
            new_rows.extend(parts[0][1])
            outbox.extend(parts[1:])
            statement_id = row.id
        else:
            updated.append({"id": draft.id, **values})
            statement_id = draft.id
        awards.extend(
            {
                "id": id_for(TierAward),
                "statement_id": statement_id,
                "provider_id": p.provider_id,
                "merchant_id": line["merchant_id"],
                "year": window.year,
                "month": month,
                "tier": line["tier"],
                "reward_fen": line["reward_fen"],
            }
            for line in lines2
        )
        total_all += total_fen
        eligible_count += int(eligible)
        if progress is not None and (done % 500 == 0 or done == total):
            progress(done, total)
    await compute_repo.insert_statements(session, new_rows)
    per_draft = 3  # history row, event, recipients
    for start in range(0, len(outbox), OUTBOX_BATCH * per_draft):
        await insert_together(session, *merged(outbox[start : start + OUTBOX_BATCH * per_draft]))
    await compute_repo.update_drafts(session, updated)
    await compute_repo.insert_awards(session, awards)
    seen = {p.provider_id for p in providers}
    await compute_repo.delete_statements(session, [s.id for pid, s in existing.items() if pid not in seen])
    return MonthResult(
        program_id=program_id, month=month, statements=len(providers), eligible=eligible_count, total_fen=total_all
    )


def _vouchers_of(statement: StatementRecord, expires_at: datetime, now: datetime) -> list[dict]:
    """The vouchers a published statement issues: one per dimension-1 line with a voucher, one
    for the dimension-2 rewards together."""
    issued = [(1, line["merchant_id"], line["voucher_fen"]) for line in statement.dimension1 if line["voucher_fen"] > 0]
    reward = sum(line["reward_fen"] for line in statement.dimension2)
    if reward > 0:
        issued.append((2, None, reward))
    return [
        {
            "id": id_for(Voucher),
            "program_id": statement.program_id,
            "statement_id": statement.id,
            "provider_id": statement.provider_id,
            "month": statement.month,
            "dimension": dimension,
            "merchant_id": merchant_id,
            "amount_fen": amount,
            "remaining_fen": amount,
            "issued_at": now,
            "expires_at": expires_at,
        }
        for dimension, merchant_id, amount in issued
    ]


async def publish_month(session: AsyncSession, actor: Actor, program_id: str, month: str) -> MonthResult:
    now = await clock.now(session)
    await _program_for_month(session, program_id, month)
    statements = await repo.lock_month_statements(session, program_id, month)
    if not statements:
        raise Conflict(msg("{month} has not been computed", month=month), code="month_not_computed")
    if any(s.state == "published" for s in statements):
        raise Conflict(msg("{month} is already published", month=month), code="month_published")
    expires_at = voucher_expiry(now)
    vouchers = total = 0
    for statement in statements:
        issued: list[Part] = []
        for values in _vouchers_of(statement, expires_at, now):
            _, parts = VOUCHER.creation(
                values, SYSTEM, now, event_data={"amount_fen": values["amount_fen"], "expires_at": iso_z(expires_at)}
            )
            issued += [*parts, new_timer(VOUCHER.name, values["id"], "expire", expires_at)]
            vouchers += 1
            total += values["amount_fen"]
        # the statement's transition, its vouchers with their outbox rows and expiry timers: one write
        await INCENTIVE_STATEMENT.fire(
            session, statement, "publish", actor, now=now, changes={"published_at": now}, also=merged(issued)
        )
    return MonthResult(
        program_id=program_id,
        month=month,
        statements=len(statements),
        eligible=sum(int(s.eligible) for s in statements),
        total_fen=total,
        vouchers=vouchers,
    )


async def list_statements(
    session: AsyncSession, actor: Actor, *, month: str | None, limit: int, cursor: str | None
) -> PageOut[StatementOut]:
    page = await repo.statements_page(session, actor.role, actor.id, month=month, limit=limit, cursor=cursor)
    now = await clock.now(session)
    return PageOut[StatementOut](items=[statement_out(r, actor, now) for r in page.items], next_cursor=page.next_cursor)
