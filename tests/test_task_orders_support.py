"""Helpers shared by the task-order and wallet tests (no tests here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from app.db.models.task_orders import Hold, LedgerLine, LedgerTransaction, Wallet
from tests.conftest import Factory, User


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def minute(moment: datetime) -> datetime:
    """The next whole minute at or after `moment`."""
    base = moment.replace(second=0, microsecond=0)
    return base if base == moment else base + timedelta(minutes=1)


async def wallet(client, user: User) -> dict[str, int]:
    r = await client.get("/v1/wallet", headers=user.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def fund(client, user: User, amount: int) -> dict[str, Any]:
    r = await client.post(
        "/v1/wallet/top-ups", headers=user.headers, json={"amount_fen": amount, "method": "online", "reference": "test"}
    )
    assert r.status_code == 201 and r.json()["state"] == "succeeded", r.text
    return r.json()


async def ready_merchant(client, factory: Factory, amount: int = 1_000_000) -> tuple[User, str]:
    """A merchant with a bound Xingtu account, `amount` fen available and one general-plan product."""
    merchant = await factory.user("merchant")
    r = await client.post("/v1/xingtu-binding", headers=merchant.headers, json={})
    assert r.status_code == 200, r.text
    if amount:
        await fund(client, merchant, amount)
    r = await client.post(
        "/v1/products",
        headers=merchant.headers,
        json={"title": "测试商品", "price_fen": 9900, "inventory": 100, "general_commission_bp": 1500},
    )
    assert r.status_code == 201, r.text
    return merchant, r.json()["id"]


def order_body(
    creator: User, product_id: str, start: datetime, *, hours: int = 3, session_type: str = "dedicated", **extra: Any
) -> dict[str, Any]:
    return {
        "title": "双十一专场带货",
        "contact_name": "王经理",
        "contact_phone": "13912345678",
        "expected_start_at": iso(start),
        "return_samples": False,
        "session_type": session_type,
        "hours": hours,
        "creator_id": creator.id,
        "products": [{"product_id": product_id, "plan": "general"}],
        **extra,
    }


async def create_order(client, merchant: User, creator: User, product_id: str, start: datetime, **kw: Any) -> dict[str, Any]:
    body = order_body(creator, product_id, start, **kw)
    r = await client.post("/v1/task-orders", headers=merchant.headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def act(client, user: User, order_id: str, action: str, body: Any = None):
    return (
        await client.post(f"/v1/task-orders/{order_id}/{action}", headers=user.headers, json=body)
        if body is not None
        else await client.post(f"/v1/task-orders/{order_id}/{action}", headers=user.headers)
    )


CANCEL = {"reason": {"code": "schedule_changed", "note": "档期冲突"}}


async def live(
    client,
    platform: User,
    creator: User,
    external_id: str,
    started: datetime,
    ended: datetime | None = None,
    room: str = "https://live.example/room/1",
) -> dict[str, Any]:
    # upstream reports a session when it has happened (a future one is 422): the clock gets there first
    await client.lc_factory.advance_to(started)
    body = {"external_id": external_id, "host_id": creator.id, "started_at": iso(started), "peak_viewers": 1234, "room_url": room}
    if ended is not None:
        body["ended_at"] = iso(ended)
    r = await client.post("/v1/ingest/live-sessions", headers=platform.headers, json=body)
    assert r.status_code in (200, 201), r.text
    return r.json()


async def order(client, user: User, order_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/task-orders/{order_id}", headers=user.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def ledger_invariants(maker) -> None:
    """Every ledger transaction sums to zero; every wallet (external included) sums to zero;
    no account bucket is negative; each wallet equals the sum of its lines; every ended hold
    ended once (one freeze and at most one ending transaction per hold)."""
    async with maker() as session:
        unbalanced = (
            await session.execute(
                select(LedgerLine.transaction_id).group_by(LedgerLine.transaction_id).having(func.sum(LedgerLine.amount_fen) != 0)
            )
        ).all()
        assert unbalanced == []
        wallets = list(await session.scalars(select(Wallet)))
        assert sum(w.available_fen + w.frozen_fen for w in wallets) == 0
        for w in wallets:
            if w.owner_id != "external":
                assert w.available_fen >= 0 and w.frozen_fen >= 0, (w.owner_id, w.available_fen, w.frozen_fen)
            sums = dict(
                (
                    await session.execute(
                        select(LedgerLine.bucket, func.sum(LedgerLine.amount_fen))
                        .where(LedgerLine.wallet_id == w.id)
                        .group_by(LedgerLine.bucket)
                    )
                ).all()
            )
            assert int(sums.get("available", 0)) == w.available_fen
            assert int(sums.get("frozen", 0)) == w.frozen_fen
        for hold in await session.scalars(select(Hold)):
            kinds = list(
                await session.scalars(
                    select(LedgerTransaction.kind).where(
                        LedgerTransaction.ref_id == hold.ref_id, LedgerTransaction.ref_type == "task_order"
                    )
                )
            )
            assert kinds.count("freeze") == 1
            endings = [k for k in kinds if k in ("paid", "released", "split")]
            assert len(endings) == (0 if hold.status == "held" else 1), (hold.status, kinds)
        held = int(await session.scalar(select(func.coalesce(func.sum(Hold.amount_fen), 0)).where(Hold.status == "held")))
        frozen = int(await session.scalar(select(func.coalesce(func.sum(Wallet.frozen_fen), 0))))
        assert held == frozen
        await session.rollback()
