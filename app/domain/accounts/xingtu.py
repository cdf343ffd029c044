"""The merchant's Xingtu (星图) account binding, which task orders require."""

from __future__ import annotations

import secrets

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, NotFound
from app.db.repositories import task_orders as repo
from app.domain.schemas import Strict
from app.state.core import Actor


class XingtuBindingIn(Strict):
    xingtu_account_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="bind this existing account; omit to register a new one",
    )


class XingtuBindingOut(BaseModel):
    merchant_id: str
    xingtu_account_id: str
    registered: bool = Field(description="true when a new Xingtu account was registered for the merchant")


async def bind_xingtu(session: AsyncSession, actor: Actor, body: XingtuBindingIn) -> XingtuBindingOut:
    exists, bound = await repo.lock_xingtu_binding(session, actor.id)
    if not exists:
        raise NotFound("no such account")
    if body.xingtu_account_id is None:
        if bound:  # already bound: registering again would orphan it
            return XingtuBindingOut(merchant_id=actor.id, xingtu_account_id=bound, registered=False)
        registered = f"xt{secrets.randbelow(10**12):012d}"
        await repo.bind_xingtu(session, actor.id, registered)
        return XingtuBindingOut(merchant_id=actor.id, xingtu_account_id=registered, registered=True)
    if await repo.xingtu_taken_by_other(session, body.xingtu_account_id, actor.id):
        raise Conflict("this Xingtu account is bound to another merchant", code="xingtu_account_taken")
    await repo.bind_xingtu(session, actor.id, body.xingtu_account_id)
    return XingtuBindingOut(merchant_id=actor.id, xingtu_account_id=body.xingtu_account_id, registered=False)
