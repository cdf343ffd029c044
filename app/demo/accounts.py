"""The base demo accounts: one of each role, and the demo merchant's products (idempotent)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models.accounts import Account, Product
from app.domain.accounts import AccountCreate, Profile, create_account
from app.state import clock

PASSWORD = "demo-pass-123"
ACCOUNTS = [
    ("operator", "operator", "平台运营", {}),
    ("platform", "platform", "Upstream systems", {}),
    ("merchant", "merchant", "示例旗舰店", {"shop_name": "示例旗舰店", "alliance_member": True, "experience_score": "4.80"}),
    (
        "creator",
        "creator",
        "小美直播",
        {
            "nickname": "小美",
            "level": 3,
            "followers": 120000,
            "quotes": {"dedicated_hourly_fen": 100000, "shared_hourly_fen": 40000},
            "contact": {"phone": "13800138000", "wechat": "xiaomei_live"},
        },
    ),
    ("agency", "agency", "星光机构", {"name": "星光机构", "head_annual": False}),
    ("group_leader", "leader", "团长老王", {"name": "团长老王"}),
    ("service_provider", "provider", "优播服务商", {"name": "优播服务商", "certified": True}),
]


async def base_accounts(session: AsyncSession) -> tuple[dict[str, Account], list[str]]:
    """The accounts by username (ORM rows: some module steps set columns on them) and the lines
    to print."""
    lines = [f"demo accounts (password for all: {PASSWORD}):"]
    accounts: dict[str, Account] = {}
    for role, username, display, profile in ACCOUNTS:
        account = await session.scalar(select(Account).where(Account.username == username))
        if account is None:
            created = await create_account(
                session,
                AccountCreate(
                    role=role,
                    username=username,
                    password=PASSWORD,
                    display_name=display,
                    profile=Profile.model_validate(profile),
                ),
            )
            # the steps get ORM accounts, as for the existing ones (some set columns on them)
            account = await session.get_one(Account, created.id)
        accounts[username] = account
        lines.append(f"  {role:<17} {username}")
    merchant = accounts["merchant"]
    if not await session.scalar(select(Product.id).where(Product.shop_id == merchant.id)):
        now = await clock.now(session)
        for title, brand, price, stock, bp in [
            ("旗舰手机 X1", "Xphone", 399900, 200, 1500),
            ("无线耳机 Pro", "Xphone", 59900, 1000, 2000),
            ("保温杯", None, 9900, 500, None),
        ]:
            session.add(
                Product(
                    shop_id=merchant.id,
                    title=title,
                    brand=brand,
                    price_fen=price,
                    inventory=stock,
                    general_commission_bp=bp,
                    status="on_sale",
                    created_at=now,
                    updated_at=now,
                )
            )
        lines.append("  3 products for the merchant")
    return accounts, lines
