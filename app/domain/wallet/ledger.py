"""Wallets, the double-entry ledger and holds (财务管理).

Every movement is one `LedgerTransaction` whose lines sum to zero, between the buckets
`available` and `frozen` of account wallets and the external funding wallet (`owner_id =
"external"`, the outside world: its balance is minus everything brought in). Wallet rows are
locked `FOR UPDATE` in `owner_id` order, so two movements never deadlock. No account's available
or frozen balance goes below zero: a movement that would is refused with 409
`insufficient_balance` before anything is written.

Reusable by any module: `fund`, `freeze` (→ a `Hold`), `release`, `pay`, `split`, `transfer`,
`balance`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, NotFound
from app.core.i18n import msg
from app.db.base import id_for, new_id, table_of
from app.db.bulk import FromGate, Part, insert_together, write_gated
from app.db.models.task_orders import (
    EXTERNAL_OWNER,
    Bucket,
    Hold,
    HoldStatus,
    LedgerKind,
    LedgerLine,
    LedgerRef,
    LedgerTransaction,
)
from app.db.repositories import wallet as repo
from app.db.repositories.wallet import HoldRecord
from app.state import clock

AVAILABLE = Bucket.available
FROZEN = Bucket.frozen

Movement = tuple[str, str, int]  # (owner_id, bucket, signed amount)
_TRANSACTIONS, _LINES, _HOLDS = table_of(LedgerTransaction), table_of(LedgerLine), table_of(Hold)


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
    kind: LedgerKind,
    movements: list[Movement],
    *,
    ref_type: LedgerRef | None = None,
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
    balances: dict[str, dict[str, int]] = {
        owner: {AVAILABLE: w.available_fen, FROZEN: w.frozen_fen} for owner, w in wallets.items()
    }
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
    session: AsyncSession, owner_id: str, amount_fen: int, *, ref_type: LedgerRef, ref_id: str, memo: str | None = None
) -> str:
    """Money comes in from outside (a top-up): external → the account's available."""
    return await post(
        session,
        LedgerKind.top_up,
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
    kind: LedgerKind = LedgerKind.transfer,
    ref_type: LedgerRef | None = None,
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
    ref_type: LedgerRef,
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
        "status": HoldStatus.held,
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
            [{"id": tx_id, "kind": LedgerKind.freeze, "ref_type": ref_type, "ref_id": ref_id, "memo": memo, "created_at": now}],
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
    return HoldStatus.held


async def hold_of(session: AsyncSession, ref_id: str) -> HoldRecord | None:
    return await repo.hold_of(session, ref_id)


async def split(
    session: AsyncSession, ref_id: str, payee_fen: int, *, ref_type: LedgerRef, memo: str | None = None
) -> HoldRecord:
    """End the hold of `ref_id`: `payee_fen` to the payee's available, the rest back to the
    payer's available. A hold ends exactly once (a second attempt is a 409)."""
    now = await clock.now(session)
    hold = await repo.hold_of(session, ref_id)
    if hold is None:
        raise NotFound(msg("no hold for {ref_id}", ref_id=ref_id))
    if not 0 <= payee_fen <= hold.amount_fen:
        raise ValueError("payee share out of range")
    status = (
        HoldStatus.paid if payee_fen == hold.amount_fen else HoldStatus.released if payee_fen == 0 else HoldStatus.partly_paid
    )
    ended = await repo.end_hold(session, ref_id, status, payee_fen, now)
    if ended is None:
        raise Conflict("this hold has already ended", code="hold_ended")
    await post(
        session,
        LedgerKind(status),
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


async def release(session: AsyncSession, ref_id: str, *, ref_type: LedgerRef, memo: str | None = None) -> HoldRecord:
    return await split(session, ref_id, 0, ref_type=ref_type, memo=memo)


async def pay(session: AsyncSession, ref_id: str, *, ref_type: LedgerRef, memo: str | None = None) -> HoldRecord:
    hold = await hold_of(session, ref_id)
    if hold is None:
        raise NotFound(msg("no hold for {ref_id}", ref_id=ref_id))
    return await split(session, ref_id, hold.amount_fen, ref_type=ref_type, memo=memo)
