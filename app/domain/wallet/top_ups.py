"""Top-ups (充值): the payment gateway, online and bank-transfer top-ups, the operator's decision, expiry."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import get_settings
from app.core.errors import NotFound
from app.db.base import id_for
from app.db.bulk import insert_together
from app.db.models.task_orders import LedgerRef, TopUp
from app.db.repositories import entities
from app.db.repositories import wallet as repo
from app.db.repositories.platform import TransitionRow
from app.db.repositories.wallet import TopUpRecord
from app.domain.notifications import message_rows
from app.domain.schemas import PageOut
from app.domain.wallet.ledger import (
    fund,
)
from app.domain.wallet.schemas import TopUpCreate, TopUpDecision, TopUpMethod, TopUpOut
from app.state import clock
from app.state.core import SYSTEM, Actor, history
from app.state.timers import fire_due, new_timer, on_timer, page_as_of_now
from app.state.top_up import TOP_UP


class GatewayResult(BaseModel):
    succeeded: bool
    gateway_ref: str | None = None


class PaymentGateway(Protocol):
    async def charge(self, top_up: TopUpRecord) -> GatewayResult: ...


class InstantGateway:
    """Outside production: every online payment succeeds at once."""

    async def charge(self, top_up: TopUpRecord) -> GatewayResult:
        return GatewayResult(succeeded=True, gateway_ref=f"sim_{secrets.token_hex(8)}")


class PendingGateway:
    """Production without a configured gateway: the payment stays pending until an operator
    confirms it (or it expires)."""

    async def charge(self, top_up: TopUpRecord) -> GatewayResult:
        return GatewayResult(succeeded=False)


def payment_gateway() -> PaymentGateway:
    return InstantGateway() if get_settings().env != "production" else PendingGateway()


def top_up_out(row: TopUpRecord, actor: Actor, now: datetime) -> TopUpOut:
    return TopUpOut(
        id=row.id,
        account_id=row.account_id,
        amount_fen=row.amount_fen,
        method=TopUpMethod(row.method),
        reference=row.reference,
        gateway_ref=row.gateway_ref,
        state=row.state,
        version=row.version,
        allowed_actions=TOP_UP.allowed_actions(row, actor, now),
        created_at=row.created_at,
        expires_at=row.expires_at,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        decision_note=row.decision_note,
    )


def _decided(actor: Actor, now: datetime, note: str | None) -> dict:
    return {"decided_at": now, "decided_by": actor.id, "decision_note": note}


async def _succeed(
    session: AsyncSession, row: TopUpRecord, actor: Actor, now: datetime, note: str | None = None, **changes: object
) -> TopUpRecord:
    row = await TOP_UP.fire(
        session,
        row,
        "confirm",
        actor,
        now=now,
        reason=note,
        event_data={"amount_fen": row.amount_fen},
        changes={**_decided(actor, now, note), **changes},
        also=message_rows(
            row.account_id,
            "top_up.confirmed",
            "充值成功",
            f"充值 {row.amount_fen / 100:.2f} 元已到账",
            {"top_up_id": row.id},
            now,
        ),
    )
    await fund(session, row.account_id, row.amount_fen, ref_type=LedgerRef.top_up, ref_id=row.id, memo=f"充值 {row.method}")
    return row


async def create_top_up(
    session: AsyncSession, actor: Actor, body: TopUpCreate, *, gateway: PaymentGateway | None = None
) -> TopUpOut:
    now = await clock.now(session)
    values = {
        "id": id_for(TopUp),
        "account_id": actor.id,
        "amount_fen": body.amount_fen,
        "method": body.method.value,
        "reference": body.reference,
        "gateway_ref": None,
        "created_at": now,
        "expires_at": now + timedelta(days=get_settings().top_up_expiry_days),
        "decided_at": None,
        "decided_by": None,
        "decision_note": None,
    }
    result = None
    if body.method is TopUpMethod.online:  # the gateway's answer is written with the top-up
        row, _ = TOP_UP.creation(values, actor, now)
        result = await (gateway or payment_gateway()).charge(row)
        values["gateway_ref"] = result.gateway_ref
    row, parts = TOP_UP.creation(values, actor, now, event_data={"amount_fen": body.amount_fen, "method": body.method.value})
    await insert_together(session, *parts, new_timer("top_up", row.id, "expire", row.expires_at))
    if result is not None and result.succeeded:
        row = await _succeed(session, row, SYSTEM, now, "payment gateway")
    return top_up_out(row, actor, now)


async def _visible_top_up(session: AsyncSession, actor: Actor, top_up_id: str, *, lock: bool = False) -> TopUpRecord:
    row = await entities.entity(session, TOP_UP.table, TopUpRecord, top_up_id, lock=lock)
    if row is None or (actor.role != "operator" and row.account_id != actor.id):
        raise NotFound("no such top-up")
    return row


async def get_top_up(session: AsyncSession, actor: Actor, top_up_id: str) -> TopUpOut:
    await fire_due(session, entity_id=top_up_id)
    row = await _visible_top_up(session, actor, top_up_id)
    return top_up_out(row, actor, await clock.now(session))


async def decide_top_up(session: AsyncSession, actor: Actor, top_up_id: str, action: str, body: TopUpDecision | None) -> TopUpOut:
    await fire_due(session, entity_id=top_up_id)
    row = await _visible_top_up(session, actor, top_up_id, lock=True)
    now = await clock.now(session)
    note = body.note if body else None
    if action == "confirm":
        row = await _succeed(session, row, actor, now, note)
    else:
        row = await TOP_UP.fire(
            session,
            row,
            "reject",
            actor,
            now=now,
            reason=note,
            changes=_decided(actor, now, note),
            also=message_rows(
                row.account_id,
                "top_up.rejected",
                "充值未通过",
                f"充值 {row.amount_fen / 100:.2f} 元未确认到账" + (f"：{note}" if note else ""),
                {"top_up_id": row.id},
                now,
            ),
        )
    return top_up_out(row, actor, now)


@on_timer("top_up", "expire")
async def expire_on_timer(session: AsyncSession, row: TopUpRecord, now: datetime) -> None:
    await TOP_UP.fire(
        session,
        row,
        "expire",
        SYSTEM,
        now=now,
        changes={"decided_at": now, "decided_by": SYSTEM.id},
        also=message_rows(
            row.account_id,
            "top_up.expired",
            "充值已过期",
            f"充值 {row.amount_fen / 100:.2f} 元在 7 天内未确认，已过期",
            {"top_up_id": row.id},
            now,
        ),
    )


async def list_top_ups(
    session: AsyncSession, actor: Actor, *, state: str | None, account_id: str | None, limit: int, cursor: str | None
) -> PageOut[TopUpOut]:
    page = await page_as_of_now(
        session,
        "top_up",
        lambda: repo.top_ups_page(session, actor.role, actor.id, state=state, account_id=account_id, limit=limit, cursor=cursor),
    )
    now = await clock.now(session)
    return PageOut[TopUpOut](items=[top_up_out(r, actor, now) for r in page.items], next_cursor=page.next_cursor)


async def top_up_history(session: AsyncSession, actor: Actor, top_up_id: str) -> list[TransitionRow]:
    """Every transition of a top-up its owner or an operator may see."""
    await get_top_up(session, actor, top_up_id)
    return await history(session, "top_up", top_up_id)
