"""Wallets, the double-entry ledger, holds and top-ups (财务管理).

Every movement is one `LedgerTransaction` whose lines sum to zero, between the buckets
`available` and `frozen` of account wallets and the external funding wallet (`owner_id =
"external"`, the outside world: its balance is minus everything brought in). Wallet rows are
locked `FOR UPDATE` in `owner_id` order, so two movements never deadlock. No account's available
or frozen balance goes below zero: a movement that would is refused with 409
`insufficient_balance` before anything is written.

Reusable by any module: `fund`, `freeze` (→ a `Hold`), `release`, `pay`, `split`, `transfer`,
`balance`."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, Field
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import get_settings
from app.db.base import new_id
from app.db.bulk import insert_together
from app.db.models.accounts import Account
from app.db.models.task_orders import EXTERNAL_OWNER, Hold, LedgerLine, LedgerTransaction, TopUp, Wallet
from app.db.pagination import keyset_page
from app.domain import clock
from app.domain.errors import Conflict, NotFound
from app.domain.exports import csv_bytes, xlsx_bytes
from app.domain.notifications import notify
from app.domain.schemas import Strict
from app.state.core import SYSTEM, Actor
from app.state.timers import fire_due, on_timer, schedule
from app.state.top_up import TOP_UP

AVAILABLE = "available"
FROZEN = "frozen"

Movement = tuple[str, str, int]  # (owner_id, bucket, signed amount)


# --------------------------------------------------------------------------- the ledger
_LOCK = (select(Wallet).where(Wallet.owner_id.in_(bindparam("owners", expanding=True)))
         .order_by(Wallet.owner_id).with_for_update().execution_options(populate_existing=True))


async def _locked(session: AsyncSession, owner_ids: set[str]) -> dict[str, Wallet]:
    return {w.owner_id: w for w in await session.scalars(_LOCK, {"owners": sorted(owner_ids)})}


async def lock_wallets(session: AsyncSession, owner_ids: set[str], now: datetime | None = None) -> dict[str, Wallet]:
    """Lock the owners' wallets `FOR UPDATE` in `owner_id` order, creating the missing ones
    first (then the lock is taken again, in order, over all of them)."""
    wallets = await _locked(session, owner_ids)
    missing = owner_ids - wallets.keys()
    if not missing:
        return wallets
    now = now or await clock.now(session)
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    for owner in sorted(missing):
        await session.execute(insert(Wallet).values(
            id=new_id("wal"), owner_id=owner, available_fen=0, frozen_fen=0, updated_at=now,
        ).on_conflict_do_nothing(index_elements=["owner_id"]))
    return await _locked(session, owner_ids)


async def post(session: AsyncSession, kind: str, movements: list[Movement], *, ref_type: str | None = None,
               ref_id: str | None = None, memo: str | None = None, now: datetime | None = None,
               also: tuple[Table, list[dict[str, Any]]] | None = None) -> str:
    """Post one balanced transaction (its id is returned); `also`: rows of another table written
    in the same statement (a hold). Raises 409 `insufficient_balance` (with `required_fen`
    and `available_fen`) when an account's bucket would go below zero; nothing is written then."""
    movements = [m for m in movements if m[2] != 0]
    if sum(m[2] for m in movements) != 0:
        raise ValueError(f"unbalanced ledger transaction {kind}: {movements}")
    now = now or await clock.now(session)
    wallets = await lock_wallets(session, {m[0] for m in movements}, now)
    # check first: all or nothing
    delta: dict[tuple[str, str], int] = {}
    for owner, bucket, amount in movements:
        delta[(owner, bucket)] = delta.get((owner, bucket), 0) + amount
    for (owner, bucket), amount in delta.items():
        if owner == EXTERNAL_OWNER:
            continue
        current = getattr(wallets[owner], f"{bucket}_fen")
        if current + amount < 0:
            raise Conflict("the balance is too low for this movement", code="insufficient_balance",
                           required_fen=-amount, available_fen=current, account_id=owner, bucket=bucket)
    tx_id = new_id("ltx")
    lines = []
    for owner, bucket, amount in movements:
        wallet = wallets[owner]
        balance = getattr(wallet, f"{bucket}_fen") + amount
        setattr(wallet, f"{bucket}_fen", balance)
        wallet.updated_at = now
        lines.append({"id": new_id("lln"), "transaction_id": tx_id, "wallet_id": wallet.id, "owner_id": owner,
                      "bucket": bucket, "amount_fen": amount, "balance_after_fen": balance, "created_at": now})
    await insert_together(session, (LedgerTransaction.__table__, [{
        "id": tx_id, "kind": kind, "ref_type": ref_type, "ref_id": ref_id, "memo": memo, "created_at": now}]),
        (LedgerLine.__table__, lines), *([also] if also else []))
    return tx_id


async def balance(session: AsyncSession, owner_id: str) -> tuple[int, int]:
    """(available_fen, frozen_fen) of an account; (0, 0) without a wallet yet."""
    row = (await session.execute(select(Wallet.available_fen, Wallet.frozen_fen)
                                 .where(Wallet.owner_id == owner_id))).first()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def fund(session: AsyncSession, owner_id: str, amount_fen: int, *, ref_type: str, ref_id: str,
               memo: str | None = None) -> str:
    """Money comes in from outside (a top-up): external → the account's available."""
    return await post(session, "top_up", [(EXTERNAL_OWNER, AVAILABLE, -amount_fen), (owner_id, AVAILABLE, amount_fen)],
                      ref_type=ref_type, ref_id=ref_id, memo=memo)


async def transfer(session: AsyncSession, from_id: str, to_id: str, amount_fen: int, *, kind: str = "transfer",
                   ref_type: str | None = None, ref_id: str | None = None,
                   memo: str | None = None) -> str:
    """Available to available between two accounts (409 `insufficient_balance` if short)."""
    return await post(session, kind, [(from_id, AVAILABLE, -amount_fen), (to_id, AVAILABLE, amount_fen)],
                      ref_type=ref_type, ref_id=ref_id, memo=memo)


async def freeze(session: AsyncSession, payer_id: str, payee_id: str, amount_fen: int, *, ref_type: str,
                 ref_id: str, memo: str | None = None) -> str:
    """Move `amount_fen` from the payer's available to frozen, as a hold for `ref_id` (written
    with the ledger transaction). Returns the hold's status, `held`."""
    now = await clock.now(session)
    hold = {"id": new_id("hld"), "ref_id": ref_id, "payer_id": payer_id, "payee_id": payee_id,
            "amount_fen": amount_fen, "status": "held", "payee_fen": None, "created_at": now, "ended_at": None}
    await post(session, "freeze", [(payer_id, AVAILABLE, -amount_fen), (payer_id, FROZEN, amount_fen)],
               ref_type=ref_type, ref_id=ref_id, memo=memo, now=now, also=(Hold.__table__, [hold]))
    return hold["status"]


async def hold_of(session: AsyncSession, ref_id: str) -> Hold | None:
    return await session.scalar(select(Hold).where(Hold.ref_id == ref_id))


async def split(session: AsyncSession, ref_id: str, payee_fen: int, *, ref_type: str, memo: str | None = None) -> Hold:
    """End the hold of `ref_id`: `payee_fen` to the payee's available, the rest back to the
    payer's available. A hold ends exactly once (a second attempt is a 409)."""
    now = await clock.now(session)
    hold = await session.scalar(select(Hold).where(Hold.ref_id == ref_id).with_for_update()
                                .execution_options(populate_existing=True))
    if hold is None:
        raise NotFound(f"no hold for {ref_id}")
    if not 0 <= payee_fen <= hold.amount_fen:
        raise ValueError("payee share out of range")
    status = "paid" if payee_fen == hold.amount_fen else "released" if payee_fen == 0 else "split"
    ended = await session.execute(update(Hold).where(Hold.id == hold.id, Hold.status == "held")
                                  .values(status=status, payee_fen=payee_fen, ended_at=now))
    if ended.rowcount != 1:
        raise Conflict("this hold has already ended", code="hold_ended")
    hold.status, hold.payee_fen, hold.ended_at = status, payee_fen, now
    await post(session, status, [
        (hold.payer_id, FROZEN, -hold.amount_fen),
        (hold.payee_id, AVAILABLE, payee_fen),
        (hold.payer_id, AVAILABLE, hold.amount_fen - payee_fen),
    ], ref_type=ref_type, ref_id=ref_id, memo=memo, now=now)
    return hold


async def release(session: AsyncSession, ref_id: str, *, ref_type: str, memo: str | None = None) -> Hold:
    return await split(session, ref_id, 0, ref_type=ref_type, memo=memo)


async def pay(session: AsyncSession, ref_id: str, *, ref_type: str, memo: str | None = None) -> Hold:
    hold = await hold_of(session, ref_id)
    if hold is None:
        raise NotFound(f"no hold for {ref_id}")
    return await split(session, ref_id, hold.amount_fen, ref_type=ref_type, memo=memo)


# --------------------------------------------------------------------------- wallet views
class WalletOut(BaseModel):
    account_id: str
    available_fen: int
    frozen_fen: int
    total_fen: int


class EntryOut(BaseModel):
    id: str
    transaction_id: str
    kind: str
    bucket: str
    amount_fen: int
    balance_after_fen: int
    ref_type: str | None
    ref_id: str | None
    memo: str | None
    created_at: datetime


async def wallet_of(session: AsyncSession, owner_id: str) -> WalletOut:
    available, frozen = await balance(session, owner_id)
    return WalletOut(account_id=owner_id, available_fen=available, frozen_fen=frozen, total_fen=available + frozen)


async def entries(session: AsyncSession, owner_id: str, *, limit: int,
                  cursor: str | None) -> tuple[list[EntryOut], str | None]:
    lines, next_cursor = await keyset_page(session, select(LedgerLine).where(LedgerLine.owner_id == owner_id),
                                           LedgerLine.id, limit=limit, cursor=cursor)
    txs = {t.id: t for t in await session.scalars(select(LedgerTransaction).where(
        LedgerTransaction.id.in_({line.transaction_id for line in lines})))} if lines else {}
    return [EntryOut(id=line.id, transaction_id=line.transaction_id, kind=txs[line.transaction_id].kind,
                     bucket=line.bucket, amount_fen=line.amount_fen, balance_after_fen=line.balance_after_fen,
                     ref_type=txs[line.transaction_id].ref_type, ref_id=txs[line.transaction_id].ref_id,
                     memo=txs[line.transaction_id].memo, created_at=line.created_at)
            for line in lines], next_cursor


async def resolve_owner(session: AsyncSession, actor: Actor, account_id: str | None) -> str:
    """Whose wallet the caller asks for: its own; an operator may name any account."""
    if account_id is None or account_id == actor.id:
        if actor.role not in ("merchant", "creator"):
            raise NotFound("operators name the wallet with ?account_id=")
        return actor.id
    if actor.role != "operator":
        raise NotFound("no such wallet")
    account = await session.get(Account, account_id)
    if account is None or account.role not in ("merchant", "creator"):
        raise NotFound("no such wallet")
    return account_id


# --------------------------------------------------------------------------- top-ups
class TopUpMethod(StrEnum):
    online = "online"
    bank_transfer = "bank_transfer"


class TopUpCreate(Strict):
    amount_fen: int = Field(ge=1, le=10**12, description="fen, at least 1")
    method: TopUpMethod
    reference: str | None = Field(default=None, min_length=1, max_length=100,
                                  description="the payer's reference (bank transfer memo, order no.)")


class TopUpDecision(Strict):
    note: str | None = Field(default=None, max_length=500)


class TopUpOut(BaseModel):
    id: str
    account_id: str
    amount_fen: int
    method: TopUpMethod
    reference: str | None
    gateway_ref: str | None
    state: str
    version: int
    allowed_actions: list[str]
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision_note: str | None


class GatewayResult(BaseModel):
    succeeded: bool
    gateway_ref: str | None = None


class PaymentGateway(Protocol):
    async def charge(self, top_up: TopUp) -> GatewayResult: ...


class InstantGateway:
    """Outside production: every online payment succeeds at once."""

    async def charge(self, top_up: TopUp) -> GatewayResult:
        return GatewayResult(succeeded=True, gateway_ref=f"sim_{secrets.token_hex(8)}")


class PendingGateway:
    """Production without a configured gateway: the payment stays pending until an operator
    confirms it (or it expires)."""

    async def charge(self, top_up: TopUp) -> GatewayResult:
        return GatewayResult(succeeded=False)


def payment_gateway() -> PaymentGateway:
    return InstantGateway() if get_settings().env != "production" else PendingGateway()


def top_up_out(row: TopUp, actor: Actor, now: datetime) -> TopUpOut:
    return TopUpOut(id=row.id, account_id=row.account_id, amount_fen=row.amount_fen, method=TopUpMethod(row.method),
                    reference=row.reference, gateway_ref=row.gateway_ref, state=row.state, version=row.version,
                    allowed_actions=TOP_UP.allowed_actions(row, actor, now), created_at=row.created_at,
                    expires_at=row.expires_at, decided_at=row.decided_at, decided_by=row.decided_by,
                    decision_note=row.decision_note)


async def _succeed(session: AsyncSession, row: TopUp, actor: Actor, now: datetime, note: str | None = None) -> None:
    await TOP_UP.fire(session, row, "confirm", actor, now=now, reason=note,
                      event_data={"amount_fen": row.amount_fen})
    row.decided_at, row.decided_by, row.decision_note = now, actor.id, note
    await fund(session, row.account_id, row.amount_fen, ref_type="top_up", ref_id=row.id,
               memo=f"充值 {row.method}")
    await notify(session, row.account_id, "top_up.confirmed", "充值成功",
                 f"充值 {row.amount_fen / 100:.2f} 元已到账", {"top_up_id": row.id})


async def create_top_up(session: AsyncSession, actor: Actor, body: TopUpCreate, *,
                        gateway: PaymentGateway | None = None) -> TopUpOut:
    now = await clock.now(session)
    row = TopUp(account_id=actor.id, amount_fen=body.amount_fen, method=body.method.value, reference=body.reference,
                created_at=now, expires_at=now + timedelta(days=get_settings().top_up_expiry_days))
    await TOP_UP.create(session, row, actor, now=now, event_data={"amount_fen": body.amount_fen,
                                                                    "method": body.method.value})
    await schedule(session, "top_up", row.id, "expire", row.expires_at)
    if body.method is TopUpMethod.online:
        result = await (gateway or payment_gateway()).charge(row)
        row.gateway_ref = result.gateway_ref
        if result.succeeded:
            await _succeed(session, row, SYSTEM, now, "payment gateway")
    return top_up_out(row, actor, now)


async def _visible_top_up(session: AsyncSession, actor: Actor, top_up_id: str, *, lock: bool = False) -> TopUp:
    if lock:
        row = await TOP_UP.load_for_update(session, top_up_id)
    else:
        row = await session.get(TopUp, top_up_id)
    if row is None or (actor.role != "operator" and row.account_id != actor.id):
        raise NotFound("no such top-up")
    return row


async def get_top_up(session: AsyncSession, actor: Actor, top_up_id: str) -> TopUpOut:
    await fire_due(session, entity_id=top_up_id)
    row = await _visible_top_up(session, actor, top_up_id)
    return top_up_out(row, actor, await clock.now(session))


async def decide_top_up(session: AsyncSession, actor: Actor, top_up_id: str, action: str,
                        body: TopUpDecision | None) -> TopUpOut:
    await fire_due(session, entity_id=top_up_id)
    row = await _visible_top_up(session, actor, top_up_id, lock=True)
    now = await clock.now(session)
    note = body.note if body else None
    if action == "confirm":
        await _succeed(session, row, actor, now, note)
    else:
        await TOP_UP.fire(session, row, "reject", actor, now=now, reason=note)
        row.decided_at, row.decided_by, row.decision_note = now, actor.id, note
        await notify(session, row.account_id, "top_up.rejected", "充值未通过",
                     f"充值 {row.amount_fen / 100:.2f} 元未确认到账" + (f"：{note}" if note else ""),
                     {"top_up_id": row.id})
    await session.flush()
    return top_up_out(row, actor, now)


@on_timer("top_up", "expire")
async def _expire(session: AsyncSession, row: TopUp, now: datetime) -> None:
    await TOP_UP.fire(session, row, "expire", SYSTEM, now=now)
    row.decided_at, row.decided_by = now, SYSTEM.id
    await notify(session, row.account_id, "top_up.expired", "充值已过期",
                 f"充值 {row.amount_fen / 100:.2f} 元在 7 天内未确认，已过期", {"top_up_id": row.id})


def _top_up_query(actor: Actor, state: str | None, account_id: str | None):
    query = select(TopUp)
    if actor.role != "operator":
        query = query.where(TopUp.account_id == actor.id)
    elif account_id:
        query = query.where(TopUp.account_id == account_id)
    if state:
        query = query.where(TopUp.state == state)
    return query


async def list_top_ups(session: AsyncSession, actor: Actor, *, state: str | None, account_id: str | None,
                       limit: int, cursor: str | None) -> tuple[list[TopUpOut], str | None]:
    await fire_due(session, machines=["top_up"])
    now = await clock.now(session)
    rows, next_cursor = await keyset_page(session, _top_up_query(actor, state, account_id), TopUp.id,
                                          limit=limit, cursor=cursor)
    return [top_up_out(r, actor, now) for r in rows], next_cursor


EXPORT_LIMIT = 50_000
_STATE_LABELS = {"pending": "待确认", "succeeded": "成功", "rejected": "已驳回", "expired": "已过期"}
_METHOD_LABELS = {"online": "在线支付", "bank_transfer": "对公转账"}
EXPORT_HEADER = ["充值单号 id", "账户 account_id", "金额(元) amount_yuan", "金额(分) amount_fen", "方式 method",
                 "状态 state", "参考号 reference", "创建时间 created_at", "处理时间 decided_at"]


async def export_rows(session: AsyncSession, actor: Actor, *, state: str | None,
                      account_id: str | None) -> list[list[object]]:
    await fire_due(session, machines=["top_up"])
    rows = await session.scalars(_top_up_query(actor, state, account_id).order_by(TopUp.id.desc())
                                 .limit(EXPORT_LIMIT))
    return [[r.id, r.account_id, f"{r.amount_fen / 100:.2f}", r.amount_fen,
             _METHOD_LABELS.get(r.method, r.method), _STATE_LABELS.get(r.state, r.state), r.reference or "",
             r.created_at.isoformat(), r.decided_at.isoformat() if r.decided_at else ""] for r in rows]


def to_csv(rows: list[list[object]]) -> bytes:
    return csv_bytes(EXPORT_HEADER, rows)


def to_xlsx(rows: list[list[object]]) -> bytes:
    return xlsx_bytes("充值记录", EXPORT_HEADER, rows)
