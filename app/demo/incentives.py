"""Demo data of the incentives module (listed in `app/modules.py`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import id_for
from app.db.bulk import insert_together
from app.db.models.incentives import IncentiveProgram, ProviderContract
from app.db.repositories import incentives as repo
from app.state import clock
from app.state.core import Actor
from app.state.provider_contract import PROVIDER_CONTRACT


async def demo_step(session: AsyncSession, accounts: dict[str, Any]) -> list[str]:
    """An active commission_split contract between the demo provider and merchant, and a
    program covering the current year (idempotent)."""
    provider, merchant = accounts.get("provider"), accounts.get("merchant")
    if provider is None or merchant is None:
        return []
    now = await clock.now(session)
    lines = []
    if not await repo.has_contract(session, provider.id, merchant.id):
        _, parts = PROVIDER_CONTRACT.creation(
            {
                "id": id_for(ProviderContract),
                "provider_id": provider.id,
                "merchant_id": merchant.id,
                "mode": "commission_split",
                "created_at": now,
                "activated_at": now,
                "ended_at": None,
                "end_reason": None,
            },
            Actor(provider.id, "service_provider"),
            now,
            state="active",
        )
        await insert_together(session, *parts)
        lines.append("incentives: provider ↔ merchant contract (active, commission_split)")
    year = clock.local_date(now).year
    if not await repo.has_program_from(session, f"{year}-01"):
        await repo.insert_program(
            session,
            {
                "id": id_for(IncentiveProgram),
                "name": f"服务商流量券激励 {year}",
                "month_from": f"{year}-01",
                "month_to": f"{year}-12",
                "coefficient_bp": 1000,
                "v3_reward_fen": 300_000,
                "v4_reward_fen": 1_000_000,
                "min_active_merchants": 3,
                "created_at": now,
            },
        )
        lines.append(f"incentives: program {year}-01..{year}-12")
    return lines
