"""A wallet's balances and ledger lines, and whose wallet a caller may read."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound
from app.db.repositories import wallet as repo
from app.domain.schemas import PageOut
from app.domain.wallet.ledger import (
    balance,
)
from app.domain.wallet.schemas import EntryOut, WalletOut
from app.state.core import Actor


async def wallet_of(session: AsyncSession, owner_id: str) -> WalletOut:
    available, frozen = await balance(session, owner_id)
    return WalletOut(account_id=owner_id, available_fen=available, frozen_fen=frozen, total_fen=available + frozen)


async def entries(session: AsyncSession, owner_id: str, *, limit: int, cursor: str | None) -> PageOut[EntryOut]:
    page = await repo.entries_page(session, owner_id, limit=limit, cursor=cursor)
    return PageOut[EntryOut](
        items=[EntryOut.model_validate(e, from_attributes=True) for e in page.items], next_cursor=page.next_cursor
    )


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


async def wallet_for(session: AsyncSession, actor: Actor, account_id: str | None) -> WalletOut:
    """The balances of the wallet the caller asks for (`resolve_owner`)."""
    return await wallet_of(session, await resolve_owner(session, actor, account_id))


async def entries_for(
    session: AsyncSession, actor: Actor, account_id: str | None, *, limit: int, cursor: str | None
) -> PageOut[EntryOut]:
    return await entries(session, await resolve_owner(session, actor, account_id), limit=limit, cursor=cursor)
