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
from typing import Protocol

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import get_settings
from app.core.errors import Conflict, NotFound
from app.db.base import id_for, new_id
from app.db.bulk import FromGate, Part, insert_together, write_gated
from app.db.models.task_orders import EXTERNAL_OWNER, Hold, LedgerLine, LedgerTransaction, TopUp
from app.db.repositories import entities
from app.db.repositories import wallet as repo
from app.db.repositories.wallet import HoldRecord, TopUpRecord
from app.domain.exports import csv_bytes, xlsx_bytes
from app.domain.notifications import message_rows
from app.domain.schemas import Strict
from app.state import clock
from app.state.core import SYSTEM, Actor
from app.state.timers import fire_due, new_timer, on_timer
from app.state.top_up import TOP_UP

AVAILABLE = "available"
FROZEN = "frozen"

Movement = tuple[str, str, int]  # (owner_id, bucket, signed amount)
_TRANSACTIONS, _LINES, _HOLDS = LedgerTransaction.__table__, LedgerLine.__table__, Hold.__table__


# --------------------------------------------------------------------------- the ledger
async def lock_wallets(session: AsyncSession, owner_ids: set[str], now: datetime | None = None) -> dict[str, repo.WalletRecord]:
    """Lock the owners' wallets `FOR UPDATE` in `owner_id` order, creating the missing ones
    first (then the lock is taken again, in order, over all of them)."""
    owners = sorted(owner_ids)
    wallets = await repo.lock_wallets(session, owners)
    missing = owner_ids - wallets.keys()
    if not missing:
        return wallets
    now = now or await clock.now(session)
    await repo.create_wallets(session, [{"id": new_id("wal"), "owner_id": owner, "updated_at": now} for owner in sorted(missing)])
    return await repo.lock_wallets(session, owners)


async def post(
    session: AsyncSession,
    kind: str,
    movements: list[Movement],
    *,
    ref_type: str | None = None,
    ref_id: str | None = None,
    memo: str | None = None,
    now: datetime | None = None,
    also: Part | None = None,
) -> str:
    """Post one balanced transaction (its id is returned); `also`: rows of another table written
    in the same statement. Raises 409 `insufficient_balance` (with `required_fen` and
    `available_fen`) when an account's bucket would go below zero; nothing is written then."""
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
            raise Conflict(
                "the balance is too low for this movement",
                code="insufficient_balance",
                required_fen=-amount,
                available_fen=current,
                account_id=owner,
                bucket=bucket,
            )
    tx_id = new_id("ltx")
    balances = {owner: {AVAILABLE: w.available_fen, FROZEN: w.frozen_fen} for owner, w in wallets.items()}
    lines = []
    for owner, bucket, amount in movements:
        balances[owner][bucket] += amount
        lines.append(
            {
                "id": new_id("lln"),
                "transaction_id": tx_id,
                "wallet_id": wallets[owner].id,
                "owner_id": owner,
                "bucket": bucket,
                "amount_fen": amount,
                "balance_after_fen": balances[owner][bucket],
                "created_at": now,
            }
        )
    touched = {m[0] for m in movements}
    await repo.set_balances(
        session,
        [
            {"wallet_id": wallets[o].id, "available": balances[o][AVAILABLE], "frozen": balances[o][FROZEN], "at": now}
            for o in sorted(touched)
        ],
    )
    await insert_together(
        session,
        (_TRANSACTIONS, [{"id": tx_id, "kind": kind, "ref_type": ref_type, "ref_id": ref_id, "memo": memo, "created_at": now}]),
        (_LINES, lines),
        *([also] if also else []),
    )
    return tx_id


async def balance(session: AsyncSession, owner_id: str) -> tuple[int, int]:
    """(available_fen, frozen_fen) of an account; (0, 0) without a wallet yet."""
    return await repo.balance(session, owner_id) or (0, 0)


async def fund(
    session: AsyncSession, owner_id: str, amount_fen: int, *, ref_type: str, ref_id: str, memo: str | None = None
) -> str:
    """Money comes in from outside (a top-up): external → the account's available."""
    return await post(
        session,
        "top_up",
        [(EXTERNAL_OWNER, AVAILABLE, -amount_fen), (owner_id, AVAILABLE, amount_fen)],
        ref_type=ref_type,
        ref_id=ref_id,
        memo=memo,
    )


async def transfer(
    session: AsyncSession,
    from_id: str,
    to_id: str,
    amount_fen: int,
    *,
    kind: str = "transfer",
    ref_type: str | None = None,
    ref_id: str | None = None,
    memo: str | None = None,
) -> str:
    """Available to available between two accounts (409 `insufficient_balance` if short)."""
    return await post(
        session,
        kind,
        [(from_id, AVAILABLE, -amount_fen), (to_id, AVAILABLE, amount_fen)],
        ref_type=ref_type,
        ref_id=ref_id,
        memo=memo,
    )


async def freeze(
    session: AsyncSession,
    payer_id: str,
    payee_id: str,
    amount_fen: int,
    *,
    ref_type: str,
    ref_id: str,
    memo: str | None = None,
    now: datetime | None = None,
    also: list[Part] | tuple[Part, ...] = (),
) -> str:
    """Move `amount_fen` from the payer's available to frozen, as a hold for `ref_id`: one
    conditional UPDATE of the payer's wallet with the hold, the ledger transaction and its
    lines behind it, and the `also` rows (the thing the hold is for). Returns the hold's
    status, `held`. 409 `insufficient_balance` (nothing written) when the balance is short."""
    now = now or await clock.now(session)
    hold = {
        "id": id_for(Hold),
        "ref_id": ref_id,
        "payer_id": payer_id,
        "payee_id": payee_id,
        "amount_fen": amount_fen,
        "status": "held",
        "payee_fen": None,
        "created_at": now,
        "ended_at": None,
    }
    tx_id = new_id("ltx")
    line = {"transaction_id": tx_id, "wallet_id": FromGate("id"), "owner_id": payer_id, "created_at": now}
    # parents first: the thing the hold is for (it may be referenced), then the money
    moved = await write_gated(
        session,
        repo.FREEZE_GATE,
        {"g_owner": payer_id, "g_amount": amount_fen, "g_now": now},
        *also,
        (
            _TRANSACTIONS,
            [{"id": tx_id, "kind": "freeze", "ref_type": ref_type, "ref_id": ref_id, "memo": memo, "created_at": now}],
        ),
        (
            _LINES,
            [
                {
                    "id": new_id("lln"),
                    **line,
                    "bucket": AVAILABLE,
                    "amount_fen": -amount_fen,
                    "balance_after_fen": FromGate("available_fen"),
                }
            ],
        ),
        (
            _LINES,
            [
                {
                    "id": new_id("lln"),
                    **line,
                    "bucket": FROZEN,
                    "amount_fen": amount_fen,
                    "balance_after_fen": FromGate("frozen_fen"),
                }
            ],
        ),
        (_HOLDS, [hold]),
    )
    if moved is None:
        available, _ = await balance(session, payer_id)
        raise Conflict(
            "the balance is too low for this movement",
            code="insufficient_balance",
            required_fen=amount_fen,
            available_fen=available,
            account_id=payer_id,
            bucket=AVAILABLE,
        )
    return "held"


async def hold_of(session: AsyncSession, ref_id: str) -> HoldRecord | None:
    return await repo.hold_of(session, ref_id)


async def split(session: AsyncSession, ref_id: str, payee_fen: int, *, ref_type: str, memo: str | None = None) -> HoldRecord:
    """End the hold of `ref_id`: `payee_fen` to the payee's available, the rest back to the
    payer's available. A hold ends exactly once (a second attempt is a 409)."""
    now = await clock.now(session)
    hold = await repo.hold_of(session, ref_id)
    if hold is None:
        raise NotFound(f"no hold for {ref_id}")
    if not 0 <= payee_fen <= hold.amount_fen:
        raise ValueError("payee share out of range")
    status = "paid" if payee_fen == hold.amount_fen else "released" if payee_fen == 0 else "split"
    ended = await repo.end_hold(session, ref_id, status, payee_fen, now)
    if ended is None:
        raise Conflict("this hold has already ended", code="hold_ended")
    await post(
        session,
        status,
        [
            (ended.payer_id, FROZEN, -ended.amount_fen),
            (ended.payee_id, AVAILABLE, payee_fen),
            (ended.payer_id, AVAILABLE, ended.amount_fen - payee_fen),
        ],
        ref_type=ref_type,
        ref_id=ref_id,
        memo=memo,
        now=now,
    )
    return ended


async def release(session: AsyncSession, ref_id: str, *, ref_type: str, memo: str | None = None) -> HoldRecord:
    return await split(session, ref_id, 0, ref_type=ref_type, memo=memo)


async def pay(session: AsyncSession, ref_id: str, *, ref_type: str, memo: str | None = None) -> HoldRecord:
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


async def entries(session: AsyncSession, owner_id: str, *, limit: int, cursor: str | None) -> tuple[list[EntryOut], str | None]:
    page = await repo.entries_page(session, owner_id, limit=limit, cursor=cursor)
    return [EntryOut.model_validate(e, from_attributes=True) for e in page.items], page.next_cursor


async def resolve_owner(session: AsyncSession, actor: Actor, account_id: str | None) -> str:
    """Whose wallet the caller asks for: its own; an operator may name any account."""
    if account_id is None or account_id == actor.id:
        if actor.role not in ("merchant", "creator"):
            raise NotFound("operators name the wallet with ?account_id=")
        return actor.id
    if actor.role != "operator":
        raise NotFound("no such wallet")
    if await repo.role_of(session, account_id) not in ("merchant", "creator"):
        raise NotFound("no such wallet")
    return account_id


# --------------------------------------------------------------------------- top-ups
class TopUpMethod(StrEnum):
    online = "online"
    bank_transfer = "bank_transfer"


class TopUpCreate(Strict):
    amount_fen: int = Field(ge=1, le=10**12, description="fen, at least 1")
    method: TopUpMethod
    reference: str | None = Field(
        default=None, min_length=1, max_length=100, description="the payer's reference (bank transfer memo, order no.)"
    )


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
    await fund(session, row.account_id, row.amount_fen, ref_type="top_up", ref_id=row.id, memo=f"充值 {row.method}")
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
async def _expire(session: AsyncSession, row: TopUpRecord, now: datetime) -> None:
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
) -> tuple[list[TopUpOut], str | None]:
    await fire_due(session, machines=["top_up"])
    now = await clock.now(session)
    page = await repo.top_ups_page(session, actor.role, actor.id, state=state, account_id=account_id, limit=limit, cursor=cursor)
    return [top_up_out(r, actor, now) for r in page.items], page.next_cursor


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
    await fire_due(session, machines=["top_up"])
    rows = await repo.top_ups_for_export(session, actor.role, actor.id, state=state, account_id=account_id, limit=EXPORT_LIMIT)
    return [
        [
            r.id,
            r.account_id,
            f"{r.amount_fen / 100:.2f}",
            r.amount_fen,
            _METHOD_LABELS.get(r.method, r.method),
            _STATE_LABELS.get(r.state, r.state),
            r.reference or "",
            r.created_at.isoformat(),
            r.decided_at.isoformat() if r.decided_at else "",
        ]
        for r in rows
    ]


def to_csv(rows: list[list[object]]) -> bytes:
    return csv_bytes(EXPORT_HEADER, rows)


def to_xlsx(rows: list[list[object]]) -> bytes:
    return xlsx_bytes("充值记录", EXPORT_HEADER, rows)
