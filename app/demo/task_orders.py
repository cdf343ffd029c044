"""Demo data of the task orders module: the demo merchant's Xingtu binding and a funded wallet
(listed in `app/modules.py`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.repositories import task_orders as repo
from app.db.repositories import wallet as wallet_repo
from app.domain import wallet
from app.state.core import Actor


async def demo_step(session: AsyncSession, accounts: dict[str, Any]) -> list[str]:
    """Fund the demo merchant with 1,000,000 fen through a succeeded top-up and bind its Xingtu
    account. Idempotent."""
    merchant = accounts.get("merchant")
    if merchant is None:
        return []
    lines = []
    _, bound = await repo.lock_xingtu_binding(session, merchant.id)
    if not bound:
        await repo.bind_xingtu(session, merchant.id, "xt_demo_merchant")
        lines.append("  Xingtu account bound for the merchant")
    if not await wallet_repo.has_top_up(session, merchant.id, "demo-funding"):
        await wallet.create_top_up(
            session,
            Actor(merchant.id, "merchant"),
            wallet.TopUpCreate(amount_fen=1_000_000, method=wallet.TopUpMethod.online, reference="demo-funding"),
            gateway=wallet.InstantGateway(),
        )
        lines.append("  merchant wallet funded with 1,000,000 fen (succeeded top-up)")
    return lines
