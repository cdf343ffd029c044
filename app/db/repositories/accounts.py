"""Statements on `accounts`: one account by id or username, the ids of a role among given
ids, a new account, the columns of a patch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import Update, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import id_for, table_of
from app.db.models.accounts import Account
from app.db.repositories._run import prepare_module, record_of, run
from app.db.session import dialect_of

accounts = table_of(Account)


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """An account as the domain reads it: every column of `Account` but the password hash."""

    id: str
    role: str
    username: str
    display_name: str
    created_at: datetime
    shop_name: str | None
    alliance_member: bool | None
    experience_score: Decimal | None
    xingtu_account_id: str | None
    nickname: str | None
    level: int | None
    followers: int | None
    accepting_orders: bool | None
    quote_dedicated_hourly_fen: int | None
    quote_shared_hourly_fen: int | None
    contact_phone: str | None
    contact_wechat: str | None
    org_name: str | None
    head_annual: bool | None
    certified: bool | None
    suspended_at: datetime | None
    suspension_reason: str | None


@dataclass(frozen=True, slots=True)
class Credentials:
    id: str
    role: str
    username: str
    password_hash: str
    suspended_at: datetime | None


_COLUMNS = [accounts.c[f.name] for f in fields(AccountRecord)]
_NAMES = frozenset(accounts.c.keys())
# what a patch may write (id, role, username and created_at never change)
WRITABLE = _NAMES - {"id", "role", "username", "created_at", "suspended_at", "suspension_reason"}

_BY_ID = select(*_COLUMNS).where(accounts.c.id == bindparam("id"))
_ID_BY_USERNAME = select(accounts.c.id).where(accounts.c.username == bindparam("username"))
_CREDENTIAL_COLUMNS = (accounts.c.id, accounts.c.role, accounts.c.username, accounts.c.password_hash, accounts.c.suspended_at)
_CREDENTIALS = select(*_CREDENTIAL_COLUMNS).where(accounts.c.username == bindparam("username"))
_CREDENTIALS_BY_ID = select(*_CREDENTIAL_COLUMNS).where(accounts.c.id == bindparam("id"))
_OF_ROLE = select(accounts.c.id).where(accounts.c.id.in_(bindparam("ids", expanding=True)), accounts.c.role == bindparam("role"))


def _insert(insert):
    # a taken username inserts nothing and returns no row (a racing request's too: it waits for
    # the first to commit), so the caller answers 409 `username_taken` instead of a bare conflict
    return (
        insert(accounts)
        .values({c.key: bindparam(f"v_{c.key}", type_=c.type) for c in accounts.c})
        .on_conflict_do_nothing(index_elements=["username"])
        .returning(*_COLUMNS)
    )


_INSERT = {"postgresql": _insert(pg_insert), "sqlite": _insert(sqlite_insert)}


async def account_by_id(session: AsyncSession, account_id: str) -> AccountRecord | None:
    row = (await run(session, _BY_ID, {"id": account_id})).first()
    return None if row is None else record_of(AccountRecord, row)


async def account_id_by_username(session: AsyncSession, username: str) -> str | None:
    return (await run(session, _ID_BY_USERNAME, {"username": username})).scalar()


async def credentials_by_username(session: AsyncSession, username: str) -> Credentials | None:
    row = (await run(session, _CREDENTIALS, {"username": username})).first()
    return None if row is None else record_of(Credentials, row)


async def credentials_by_id(session: AsyncSession, account_id: str) -> Credentials | None:
    row = (await run(session, _CREDENTIALS_BY_ID, {"id": account_id})).first()
    return None if row is None else record_of(Credentials, row)


async def ids_of_role(session: AsyncSession, ids: Iterable[str], role: str) -> set[str]:
    """Those of `ids` that are accounts of `role`."""
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    return set((await run(session, _OF_ROLE, {"ids": wanted, "role": role})).scalars())


async def insert_account(session: AsyncSession, values: Mapping[str, Any]) -> AccountRecord | None:
    """A new account of `values` (columns; the missing ones are NULL, the id is generated), or
    None when its username is taken."""
    if not values.keys() <= _NAMES:
        raise ValueError(f"not columns of accounts: {sorted(values.keys() - _NAMES)}")
    row_values = {**dict.fromkeys(_NAMES), **values}
    row_values["id"] = row_values["id"] or id_for(Account)
    params = {f"v_{column}": value for column, value in row_values.items()}
    row = (await run(session, _INSERT[dialect_of(session).name], params)).first()
    return None if row is None else record_of(AccountRecord, row)


@lru_cache(maxsize=256)
def _update(columns: tuple[str, ...]) -> Update:
    return (
        update(accounts)
        .where(accounts.c.id == bindparam("account_id"))
        .values({c: bindparam(f"new_{c}", type_=accounts.c[c].type) for c in columns})
        .returning(*_COLUMNS)
    )


async def update_account(session: AsyncSession, account_id: str, values: Mapping[str, Any]) -> AccountRecord | None:
    """Write `values` (columns of `WRITABLE`, only those) to the account; its new record, or None
    if there is no such account. One statement per set of columns, built on first use."""
    if not values or not values.keys() <= WRITABLE:
        raise ValueError(f"nothing or not writable: {sorted(values.keys() - WRITABLE)}")
    statement = _update(tuple(sorted(values)))
    params = {f"new_{column}": value for column, value in values.items()}
    params["account_id"] = account_id
    row = (await run(session, statement, params)).first()
    return None if row is None else record_of(AccountRecord, row)


prepare_module(globals())
