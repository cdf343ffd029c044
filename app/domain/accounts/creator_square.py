"""The creator square (达人广场): creators a merchant may book, with their quotes."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.repositories import task_orders as repo
from app.domain.schemas import PageOut


class CreatorCard(BaseModel):
    id: str
    display_name: str
    nickname: str | None
    level: int | None
    followers: int | None
    accepting_orders: bool
    quotes: dict[str, int | None]


async def list_creators(
    session: AsyncSession, *, accepting_orders: bool | None, q: str | None, level_min: int | None, limit: int, cursor: str | None
) -> PageOut[CreatorCard]:
    page = await repo.creators_page(
        session, accepting_orders=accepting_orders, q=q, level_min=level_min, limit=limit, cursor=cursor
    )
    return PageOut[CreatorCard](
        items=[
            CreatorCard(
                id=a.id,
                display_name=a.display_name,
                nickname=a.nickname,
                level=a.level,
                followers=a.followers,
                accepting_orders=bool(a.accepting_orders),
                quotes={"dedicated_hourly_fen": a.quote_dedicated_hourly_fen, "shared_hourly_fen": a.quote_shared_hourly_fen},
            )
            for a in page.items
        ],
        next_cursor=page.next_cursor,
    )
