"""Statements of the wallet: wallets, the double-entry ledger, holds and top-ups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import table_of
from app.db.models.accounts import Account
from app.db.models.task_orders import Hold, LedgerLine, LedgerTransaction, TopUp, Wallet
from app.db.repositories._run import prepare_module, record_of, run
from app.db.repositories.pages import Page, keyset
from app.db.session import dialect_of

wallets = table_of(Wallet)
ledger_transactions = table_of(LedgerTransaction)
ledger_lines = table_of(LedgerLine)
holds = table_of(Hold)
top_ups = table_of(TopUp)
accounts = table_of(Account)


@dataclass(frozen=True, slots=True)
class WalletRecord:
    id: str
    owner_id: str
    available_fen: int
    frozen_fen: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class HoldRecord:
    id: str
    ref_id: str
    payer_id: str
    payee_id: str
    amount_fen: int
    status: str
    payee_fen: int | None
    created_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class TopUpRecord:
    id: str
    state: str
    version: int
    account_id: str
    amount_fen: int
    method: str
    reference: str | None
    gateway_ref: str | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision_note: str | None


@dataclass(frozen=True, slots=True)
class EntryRecord:
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


# --------------------------------------------------------------------------- wallets
_LOCK = (
    select(wallets)
    .where(wallets.c.owner_id.in_(bindparam("owners", expanding=True)))
    .order_by(wallets.c.owner_id)
    .with_for_update()
)


def _create(dialect_insert):
    return (
        dialect_insert(wallets)
        .values(
            id=bindparam("id"), owner_id=bindparam("owner_id"), available_fen=0, frozen_fen=0, updated_at=bindparam("updated_at")
        )
        .on_conflict_do_nothing(index_elements=["owner_id"])
    )


_CREATE = {"postgresql": _create(pg_insert), "sqlite": _create(sqlite_insert)}
_SET_BALANCES = (
    update(wallets)
    .where(wallets.c.id == bindparam("wallet_id"))
    .values(available_fen=bindparam("available"), frozen_fen=bindparam("frozen"), updated_at=bindparam("at"))
)
_BALANCE = select(wallets.c.available_fen, wallets.c.frozen_fen).where(wallets.c.owner_id == bindparam("owner"))

FREEZE_GATE = (
    update(wallets)
    .where(wallets.c.owner_id == bindparam("g_owner"), wallets.c.available_fen >= bindparam("g_amount"))
    .values(
        available_fen=wallets.c.available_fen - bindparam("g_amount"),
        frozen_fen=wallets.c.frozen_fen + bindparam("g_amount"),
        updated_at=bindparam("g_now"),
    )
    .returning(wallets.c.id, wallets.c.available_fen, wallets.c.frozen_fen)
)
"""A freeze as one conditional UPDATE: the payer's wallet is locked, checked and moved at once;
the hold, its ledger lines (balances from RETURNING) and whatever rides along are written
behind it (`write_gated`), or nothing is when the balance is short."""


async def lock_wallets(session: AsyncSession, owner_ids: list[str]) -> dict[str, WalletRecord]:
    """The owners' wallets, locked `FOR UPDATE` in `owner_id` order (two movements never
    deadlock)."""
    return {row.owner_id: record_of(WalletRecord, row) for row in await run(session, _LOCK, {"owners": owner_ids})}


async def create_wallets(session: AsyncSession, rows: list[dict]) -> None:
    """Empty wallets for owners that have none (a racing creation is ignored)."""
    for row in rows:
        await run(session, _CREATE[dialect_of(session).name], row)


async def set_balances(session: AsyncSession, rows: list[dict]) -> None:
    """`rows`: wallet_id, available, frozen, at — for wallets this transaction holds locked."""
    await run(session, _SET_BALANCES, rows)


async def balance(session: AsyncSession, owner_id: str) -> tuple[int, int] | None:
    row = (await run(session, _BALANCE, {"owner": owner_id})).first()
    return None if row is None else (int(row[0]), int(row[1]))


# --------------------------------------------------------------------------- holds
_HOLD = select(holds).where(holds.c.ref_id == bindparam("ref_id"))
_END_HOLD = (
    update(holds)
    .where(holds.c.ref_id == bindparam("b_ref"), holds.c.status == "held")
    .values(status=bindparam("b_status"), payee_fen=bindparam("b_payee_fen"), ended_at=bindparam("b_at"))
    .returning(*holds.c)
)


async def hold_of(session: AsyncSession, ref_id: str) -> HoldRecord | None:
    row = (await run(session, _HOLD, {"ref_id": ref_id})).first()
    return None if row is None else record_of(HoldRecord, row)


async def end_hold(session: AsyncSession, ref_id: str, status: str, payee_fen: int, now: datetime) -> HoldRecord | None:
    """End the hold of `ref_id` if it is still held (one conditional UPDATE): the ended hold, or
    None when there is none held (it ended before, or never existed)."""
    row = (await run(session, _END_HOLD, {"b_ref": ref_id, "b_status": status, "b_payee_fen": payee_fen, "b_at": now})).first()
    return None if row is None else record_of(HoldRecord, row)


# --------------------------------------------------------------------------- ledger entries
_ENTRIES = (
    select(
        ledger_lines.c.id,
        ledger_lines.c.transaction_id,
        ledger_transactions.c.kind,
        ledger_lines.c.bucket,
        ledger_lines.c.amount_fen,
        ledger_lines.c.balance_after_fen,
        ledger_transactions.c.ref_type,
        ledger_transactions.c.ref_id,
        ledger_transactions.c.memo,
        ledger_lines.c.created_at,
    )
    .join_from(ledger_lines, ledger_transactions, ledger_transactions.c.id == ledger_lines.c.transaction_id)
    .where(ledger_lines.c.owner_id == bindparam("owner"))
)


async def entries_page(session: AsyncSession, owner_id: str, *, limit: int, cursor: str | None) -> Page[EntryRecord]:
    return await keyset(session, _ENTRIES, ledger_lines.c.id, EntryRecord, limit=limit, cursor=cursor, params={"owner": owner_id})


_ROLE = select(accounts.c.role).where(accounts.c.id == bindparam("id"))


async def role_of(session: AsyncSession, account_id: str) -> str | None:
    return (await run(session, _ROLE, {"id": account_id})).scalar()


# --------------------------------------------------------------------------- top-ups
def _top_ups_query(account_id: str | None, state: str | None):
    query = select(top_ups)
    if account_id is not None:
        query = query.where(top_ups.c.account_id == account_id)
    if state:
        query = query.where(top_ups.c.state == state)
    return query


def _scope(role: str, caller_id: str, account_id: str | None) -> str | None:
    """Whose top-ups a caller lists: its own; an operator everyone's, or one account's."""
    return account_id if role == "operator" else caller_id


async def top_ups_page(
    session: AsyncSession, role: str, caller_id: str, *, state: str | None, account_id: str | None, limit: int, cursor: str | None
) -> Page[TopUpRecord]:
    return await keyset(
        session, _top_ups_query(_scope(role, caller_id, account_id), state), top_ups.c.id, TopUpRecord, limit=limit, cursor=cursor
    )


async def top_ups_for_export(
    session: AsyncSession, role: str, caller_id: str, *, state: str | None, account_id: str | None, limit: int
) -> list[TopUpRecord]:
    query = _top_ups_query(_scope(role, caller_id, account_id), state).order_by(top_ups.c.id.desc()).limit(limit)
    return [record_of(TopUpRecord, row) for row in await run(session, query)]


_HAS_TOP_UP = (
    select(top_ups.c.id)
    .where(top_ups.c.account_id == bindparam("account_id"), top_ups.c.reference == bindparam("reference"))
    .limit(1)
)


async def has_top_up(session: AsyncSession, account_id: str, reference: str) -> bool:
    return (await run(session, _HAS_TOP_UP, {"account_id": account_id, "reference": reference})).first() is not None


prepare_module(globals())
