"""Statements of the campaigns module: campaigns and their pre-selected creators, signups with
their listed shops and planned products, the stock plan, finding creators, creators' cards and
merchants' intents. Who sees which campaign, signup and intent is written here, once."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Select, String, and_, any_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import table_of
from app.db.bulk import Part, insert_together
from app.db.models.accounts import Account, Product
from app.db.models.campaigns import (
    RELEASED_STATES,
    Campaign,
    CampaignCard,
    CampaignEligibleCreator,
    CampaignIntent,
    CampaignSignup,
    CampaignSignupItem,
    CampaignSignupShop,
)
from app.db.models.facts import SalesOrder
from app.db.repositories._run import prepare_module, record_of, run
from app.db.repositories.gmv import gmv_sum
from app.db.repositories.pages import Page, keyset
from app.db.repositories.platform import CLOCK_OFFSET
from app.db.session import dialect_of

campaigns = table_of(Campaign)
eligible_creators = table_of(CampaignEligibleCreator)
signups = table_of(CampaignSignup)
signup_shops = table_of(CampaignSignupShop)
signup_items = table_of(CampaignSignupItem)
cards = table_of(CampaignCard)
intents = table_of(CampaignIntent)
accounts = table_of(Account)
products = table_of(Product)
sales_orders = table_of(SalesOrder)

VISIBLE_TO_PARTIES = ("published", "closed")
# Signups whose products count in the stock plan (submitted, not withdrawn, rejected or expired).
PLANNED_STATES = ("products_submitted", "stock_confirmed", "ready", "live", "finished")


def _one_of(column: Any, values: tuple[str, ...]) -> Any:
    """`column IN (…)` of fixed values as plain bound literals (an `in_()` list is rendered per
    call, which keeps a statement off the fast lane)."""
    return or_(*(column == value for value in values))


def _among(statement: Select, column: Any) -> dict[str, Select]:
    """`statement` narrowed to `column` in the list `:ids`: an array parameter on PostgreSQL (one
    SQL text whatever the number of ids, so the fast lane), an expanding IN elsewhere."""
    return {
        "postgresql": statement.where(column == any_(bindparam("ids", type_=ARRAY(String)))),
        "sqlite": statement.where(column.in_(bindparam("ids", expanding=True))),
    }


def _with_clock(statement: Select) -> dict[bool, Select]:
    """The statement without and with the test clock's offset as a column."""
    return {False: statement, True: statement.add_columns(CLOCK_OFFSET)}


# =========================================================================== records
@dataclass(frozen=True, slots=True)
class CampaignRecord:
    id: str
    state: str
    version: int
    title: str
    description: str
    signup_deadline: datetime
    product_deadline: datetime
    live_from: datetime
    live_to: datetime
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SeenCampaign(CampaignRecord):
    """A campaign as a caller sees it: `eligible` says whether the calling creator is
    pre-selected (false for anyone else)."""

    eligible: bool


@dataclass(frozen=True, slots=True)
class SignupRecord:
    """A signup's own row (what the `campaign_signup` machine writes)."""

    id: str
    state: str
    version: int
    campaign_id: str
    creator_id: str
    planned_live_at: datetime
    contact_phone: str | None
    contact_wechat: str | None
    note: str | None
    traffic_units: int | None
    traffic_note: str | None
    live_session_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SignupHead(SignupRecord):
    """The signup with what its answer and its guards read from elsewhere."""

    product_deadline: datetime
    creator_nickname: str | None


@dataclass(frozen=True, slots=True)
class SignupShop:
    shop_id: str
    shop_name: str | None
    position: int
    decision: str  # pending | approved | rejected
    decision_reason: str | None
    decided_at: datetime | None
    stock_confirmed_at: datetime | None


@dataclass(frozen=True, slots=True)
class SignupItem:
    product_id: str
    shop_id: str
    title: str | None
    position: int
    planned_quantity: int


@dataclass(frozen=True, slots=True)
class SignupWithParts(SignupHead):
    """The signup with its listed shops and planned products: what the machine's per-shop
    guards decide on."""

    shops: tuple[SignupShop, ...]
    items: tuple[SignupItem, ...]


_HEAD_FIELDS = tuple(f.name for f in fields(SignupHead))


def with_parts(head: SignupHead, shops: tuple[SignupShop, ...], items: tuple[SignupItem, ...]) -> SignupWithParts:
    return SignupWithParts(**{name: getattr(head, name) for name in _HEAD_FIELDS}, shops=shops, items=items)


@dataclass(frozen=True, slots=True)
class SignupParty:
    """An account named in a new signup: the creator or a listed shop."""

    id: str
    role: str
    nickname: str | None
    shop_name: str | None
    contact_phone: str | None
    contact_wechat: str | None


@dataclass(frozen=True, slots=True)
class PlannableProduct:
    id: str
    shop_id: str
    title: str
    status: str


@dataclass(frozen=True, slots=True)
class PlanTotal:
    product_id: str
    title: str
    inventory: int
    planned_total: int


@dataclass(frozen=True, slots=True)
class PlanLine:
    product_id: str
    creator_id: str
    nickname: str | None
    signup_id: str
    planned_quantity: int
    contact_phone: str | None
    contact_wechat: str | None


@dataclass(frozen=True, slots=True)
class CreatorRecord:
    id: str
    nickname: str | None
    level: int | None
    followers: int | None


@dataclass(frozen=True, slots=True)
class CardRecord:
    campaign_id: str
    creator_id: str
    contact_phone: str | None
    contact_wechat: str | None
    intended_merchants: list[Any]
    cooperation_note: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class IntentRecord:
    id: str
    campaign_id: str
    merchant_id: str
    shop_name: str | None
    description: str
    creator_ids: list[Any]
    created_at: datetime


# =========================================================================== campaigns
def may_see_campaign(role: str, state: str) -> bool:
    """Operators see every campaign; merchants and creators the published and closed ones."""
    return role == "operator" or role in ("merchant", "creator") and state in VISIBLE_TO_PARTIES


def _campaigns_seen_by(role: str) -> Select:
    query = select(campaigns, _ELIGIBLE)
    return query if role == "operator" else query.where(_one_of(campaigns.c.state, VISIBLE_TO_PARTIES))


_ELIGIBLE = (
    select(eligible_creators.c.creator_id)
    .where(eligible_creators.c.campaign_id == campaigns.c.id, eligible_creators.c.creator_id == bindparam("creator"))
    .exists()
    .label("eligible")
)
_CAMPAIGN = _with_clock(select(campaigns, _ELIGIBLE).where(campaigns.c.id == bindparam("id")))
_TITLED = select(campaigns.c.id).where(campaigns.c.title == bindparam("title")).limit(1)


async def campaign(
    session: AsyncSession, campaign_id: str, *, creator_id: str = "", with_clock: bool = False
) -> tuple[SeenCampaign | None, int | None]:
    """The campaign (whether `creator_id` is pre-selected for it), and the test clock's offset
    when asked: one statement."""
    row = (await run(session, _CAMPAIGN[with_clock], {"id": campaign_id, "creator": creator_id})).first()
    if row is None:
        return None, None
    return record_of(SeenCampaign, row), row.clock_offset if with_clock else None


async def campaigns_page(
    session: AsyncSession, role: str, account_id: str, *, state: str | None, limit: int, cursor: str | None
) -> Page[SeenCampaign]:
    query = _campaigns_seen_by(role)
    if state is not None:
        query = query.where(campaigns.c.state == state)
    return await keyset(
        session,
        query,
        campaigns.c.id,
        SeenCampaign,
        limit=limit,
        cursor=cursor,
        params={"creator": account_id if role == "creator" else ""},
    )


async def campaign_titled(session: AsyncSession, title: str) -> str | None:
    return (await run(session, _TITLED, {"title": title})).scalar()


# --------------------------------------------------------------------------- pre-selected creators
_ELIGIBLE_IDS = (
    select(eligible_creators.c.creator_id)
    .where(eligible_creators.c.campaign_id == bindparam("id"))
    .order_by(eligible_creators.c.creator_id)
)
_IS_ELIGIBLE = select(eligible_creators.c.creator_id).where(
    eligible_creators.c.campaign_id == bindparam("id"), eligible_creators.c.creator_id == bindparam("creator")
)
_ELIGIBLE_AMONG = _among(
    select(eligible_creators.c.creator_id).where(eligible_creators.c.campaign_id == bindparam("id")),
    eligible_creators.c.creator_id,
)
_CLEAR_ELIGIBLE = delete(eligible_creators).where(eligible_creators.c.campaign_id == bindparam("id"))


async def eligible_creator_ids(session: AsyncSession, campaign_id: str) -> list[str]:
    """The campaign's pre-selected creators, sorted."""
    return list((await run(session, _ELIGIBLE_IDS, {"id": campaign_id})).scalars())


async def is_eligible(session: AsyncSession, campaign_id: str, creator_id: str) -> bool:
    return (await run(session, _IS_ELIGIBLE, {"id": campaign_id, "creator": creator_id})).first() is not None


async def eligible_among(session: AsyncSession, campaign_id: str, creator_ids: list[str]) -> set[str]:
    """Those of `creator_ids` pre-selected for the campaign."""
    if not creator_ids:
        return set()
    statement = _ELIGIBLE_AMONG[dialect_of(session).name]
    return set((await run(session, statement, {"id": campaign_id, "ids": creator_ids})).scalars())


async def replace_eligible(session: AsyncSession, campaign_id: str, creator_ids: list[str]) -> None:
    """The campaign's pre-selected creators become exactly `creator_ids` (distinct)."""
    await run(session, _CLEAR_ELIGIBLE, {"id": campaign_id})
    await insert_together(session, (eligible_creators, [{"campaign_id": campaign_id, "creator_id": c} for c in creator_ids]))


# =========================================================================== signups
def signup_visible_to(role: str, account_id: str, signup: SignupWithParts) -> bool:
    """A signup is seen by its creator, by the shops it lists and by operators."""
    if role == "operator":
        return True
    if role == "creator":
        return signup.creator_id == account_id
    if role == "merchant":
        return any(s.shop_id == account_id for s in signup.shops)
    return False


def _signups_seen_by(role: str, account_id: str) -> Select:
    query = _HEAD.where(signups.c.campaign_id == bindparam("campaign"))
    if role == "creator":
        return query.where(signups.c.creator_id == account_id)
    if role == "merchant":
        return query.where(
            select(signup_shops.c.shop_id)
            .where(signup_shops.c.signup_id == signups.c.id, signup_shops.c.shop_id == account_id)
            .exists()
        )
    return query


_HEAD = (
    select(signups, campaigns.c.product_deadline, accounts.c.nickname.label("creator_nickname"))
    .join(campaigns, campaigns.c.id == signups.c.campaign_id)
    .join(accounts, accounts.c.id == signups.c.creator_id)
)


def _signup_by_id(lock: bool, clocked: bool) -> Select:
    """Locked: only the signup's row. Its shops and items are read by statements of their own
    after the lock is granted, so they show what the transaction that held it committed (a
    locking join would re-read the signup's row but keep the other rows of its snapshot)."""
    statement = (_HEAD.add_columns(CLOCK_OFFSET) if clocked else _HEAD).where(signups.c.id == bindparam("id"))
    return statement.with_for_update(of=signups) if lock else statement


# by (lock, with the test clock's offset)
_SIGNUP = {(lock, clocked): _signup_by_id(lock, clocked) for lock in (False, True) for clocked in (False, True)}
_SHOP_COLUMNS = (
    signup_shops.c.signup_id,
    signup_shops.c.shop_id,
    accounts.c.shop_name,
    signup_shops.c.position,
    signup_shops.c.decision,
    signup_shops.c.decision_reason,
    signup_shops.c.decided_at,
    signup_shops.c.stock_confirmed_at,
)
_SHOPS = select(*_SHOP_COLUMNS).join(accounts, accounts.c.id == signup_shops.c.shop_id)
_ITEM_COLUMNS = (
    signup_items.c.signup_id,
    signup_items.c.product_id,
    signup_items.c.shop_id,
    products.c.title,
    signup_items.c.position,
    signup_items.c.planned_quantity,
)
_ITEMS = select(*_ITEM_COLUMNS).join(products, products.c.id == signup_items.c.product_id)
_SHOPS_OF = _SHOPS.where(signup_shops.c.signup_id == bindparam("id")).order_by(signup_shops.c.position)
_ITEMS_OF = _ITEMS.where(signup_items.c.signup_id == bindparam("id")).order_by(signup_items.c.position)
_SHOPS_OF_MANY = _SHOPS.where(signup_shops.c.signup_id.in_(bindparam("ids", expanding=True))).order_by(
    signup_shops.c.signup_id, signup_shops.c.position
)
_ITEMS_OF_MANY = _ITEMS.where(signup_items.c.signup_id.in_(bindparam("ids", expanding=True))).order_by(
    signup_items.c.signup_id, signup_items.c.position
)


async def signup(
    session: AsyncSession, signup_id: str, *, lock: bool = False, with_clock: bool = False
) -> tuple[SignupWithParts | None, int | None]:
    """The signup with its shops (names included) and planned products (titles included), and
    the test clock's offset when asked; `lock`: its row `FOR UPDATE` first (PostgreSQL; SQLite
    serialises writers)."""
    row = (await run(session, _SIGNUP[lock, with_clock], {"id": signup_id})).first()
    if row is None:
        return None, None
    shops = tuple(record_of(SignupShop, r) for r in await run(session, _SHOPS_OF, {"id": signup_id}))
    items = tuple(record_of(SignupItem, r) for r in await run(session, _ITEMS_OF, {"id": signup_id}))
    return with_parts(record_of(SignupHead, row), shops, items), row.clock_offset if with_clock else None


async def with_parts_of(session: AsyncSession, heads: list[SignupHead]) -> list[SignupWithParts]:
    """Signups with their shops and products: two statements for any number of them."""
    if not heads:
        return []
    ids = [h.id for h in heads]
    shops: dict[str, list[SignupShop]] = {i: [] for i in ids}
    items: dict[str, list[SignupItem]] = {i: [] for i in ids}
    for row in await run(session, _SHOPS_OF_MANY, {"ids": ids}):
        shops[row.signup_id].append(record_of(SignupShop, row))
    for row in await run(session, _ITEMS_OF_MANY, {"ids": ids}):
        items[row.signup_id].append(record_of(SignupItem, row))
    return [with_parts(h, tuple(shops[h.id]), tuple(items[h.id])) for h in heads]


async def signups_page(
    session: AsyncSession, campaign_id: str, role: str, account_id: str, *, state: str | None, limit: int, cursor: str | None
) -> Page[SignupWithParts]:
    query = _signups_seen_by(role, account_id)
    if state is not None:
        query = query.where(signups.c.state == state)
    page = await keyset(session, query, signups.c.id, SignupHead, limit=limit, cursor=cursor, params={"campaign": campaign_id})
    return Page(await with_parts_of(session, page.items), page.next_cursor)


# --------------------------------------------------------------------------- a new signup
_PARTIES = _among(
    select(
        accounts.c.id,
        accounts.c.role,
        accounts.c.nickname,
        accounts.c.shop_name,
        accounts.c.contact_phone,
        accounts.c.contact_wechat,
    ),
    accounts.c.id,
)
_SLOT_TAKEN = (
    select(signups.c.id)
    .where(
        signups.c.campaign_id == bindparam("campaign"),
        signups.c.creator_id == bindparam("creator"),
        signups.c.planned_live_at == bindparam("at"),
        and_(*(signups.c.state != s for s in RELEASED_STATES)),
    )
    .limit(1)
)


# a signup's parties with the slot's holder in the same read (one round trip)
_PARTIES_AND_SLOT = {
    name: statement.add_columns(_SLOT_TAKEN.scalar_subquery().label("slot_holder")) for name, statement in _PARTIES.items()
}


async def signup_parties_and_slot(
    session: AsyncSession, account_ids: list[str], campaign_id: str, creator_id: str, planned_live_at: datetime
) -> tuple[dict[str, SignupParty], str | None]:
    """The accounts named in a new signup, and the creator's signup that holds this (campaign,
    planned time) slot, if any (see `slot_holder`)."""
    params = {"ids": sorted(set(account_ids)), "campaign": campaign_id, "creator": creator_id, "at": planned_live_at}
    rows = (await run(session, _PARTIES_AND_SLOT[dialect_of(session).name], params)).all()
    parties = {row.id: record_of(SignupParty, row) for row in rows}
    if not rows:  # none of the accounts exists: the slot is asked on its own
        return parties, await slot_holder(session, campaign_id, creator_id, planned_live_at)
    return parties, rows[0].slot_holder


async def slot_holder(session: AsyncSession, campaign_id: str, creator_id: str, planned_live_at: datetime) -> str | None:
    """The creator's signup that holds this (campaign, planned time) slot, if any."""
    return (await run(session, _SLOT_TAKEN, {"campaign": campaign_id, "creator": creator_id, "at": planned_live_at})).scalar()


# --------------------------------------------------------------------------- decisions and products
_DECIDE = (
    update(signup_shops)
    .where(signup_shops.c.signup_id == bindparam("b_signup"), signup_shops.c.shop_id == bindparam("b_shop"))
    .values(decision=bindparam("b_decision"), decision_reason=bindparam("b_reason"), decided_at=bindparam("b_at"))
)
_CONFIRM_STOCK = (
    update(signup_shops)
    .where(signup_shops.c.signup_id == bindparam("b_signup"), signup_shops.c.shop_id == bindparam("b_shop"))
    .values(stock_confirmed_at=bindparam("b_at"))
)
_RESET_STOCK = update(signup_shops).where(signup_shops.c.signup_id == bindparam("b_signup")).values(stock_confirmed_at=None)
_CLEAR_ITEMS = delete(signup_items).where(signup_items.c.signup_id == bindparam("id"))
_PLANNABLE = _among(select(products.c.id, products.c.shop_id, products.c.title, products.c.status), products.c.id)


async def record_decision(
    session: AsyncSession, signup_id: str, shop_id: str, decision: str, reason: str | None, at: datetime
) -> None:
    """A listed shop's decision (the signup's row is locked by the caller)."""
    await run(
        session, _DECIDE, {"b_signup": signup_id, "b_shop": shop_id, "b_decision": decision, "b_reason": reason, "b_at": at}
    )


async def confirm_stock(session: AsyncSession, signup_id: str, shop_id: str, at: datetime) -> None:
    await run(session, _CONFIRM_STOCK, {"b_signup": signup_id, "b_shop": shop_id, "b_at": at})


async def clear_plan(session: AsyncSession, signup_id: str) -> None:
    """Drop the planned products and every shop's stock confirmation (a new submission replaces
    them; its items are written with its transition)."""
    await run(session, _CLEAR_ITEMS, {"id": signup_id})
    await run(session, _RESET_STOCK, {"b_signup": signup_id})


async def plannable_products(session: AsyncSession, product_ids: list[str]) -> dict[str, PlannableProduct]:
    if not product_ids:
        return {}
    return {
        row.id: record_of(PlannableProduct, row)
        for row in await run(session, _PLANNABLE[dialect_of(session).name], {"ids": sorted(set(product_ids))})
    }


# --------------------------------------------------------------------------- live sessions
_READY_AT = (
    select(signups.c.id, signups.c.campaign_id, signups.c.planned_live_at)
    .join(campaigns, campaigns.c.id == signups.c.campaign_id)
    .where(
        signups.c.creator_id == bindparam("host"),
        signups.c.state == "ready",
        campaigns.c.live_from <= bindparam("at"),
        campaigns.c.live_to > bindparam("at"),
    )
    .order_by(signups.c.id)
)
_LIVE_OF_SESSION = (
    select(signups.c.id).where(signups.c.live_session_id == bindparam("live"), signups.c.state == "live").order_by(signups.c.id)
)


async def ready_signups_at(session: AsyncSession, creator_id: str, at: datetime) -> list[tuple[str, str, datetime]]:
    """(id, campaign_id, planned_live_at) of the creator's `ready` signups whose campaign's live
    window contains `at`."""
    return [
        (row.id, row.campaign_id, row.planned_live_at) for row in await run(session, _READY_AT, {"host": creator_id, "at": at})
    ]


async def live_signups_of_session(session: AsyncSession, live_session_id: str) -> list[str]:
    return list((await run(session, _LIVE_OF_SESSION, {"live": live_session_id})).scalars())


# =========================================================================== the stock plan
_PLANNED = (
    signups.c.campaign_id == bindparam("campaign"),
    _one_of(signups.c.state, PLANNED_STATES),
    products.c.shop_id == bindparam("shop"),
)
_PLAN_TOTALS = (
    select(
        products.c.id.label("product_id"),
        products.c.title,
        products.c.inventory,
        func.sum(signup_items.c.planned_quantity).label("planned_total"),
    )
    .select_from(products)
    .join(signup_items, signup_items.c.product_id == products.c.id)
    .join(signups, signups.c.id == signup_items.c.signup_id)
    .where(*_PLANNED)
    .group_by(products.c.id, products.c.title, products.c.inventory)
    .order_by(products.c.id)
)
_PLAN_LINES = (
    select(
        signup_items.c.product_id,
        signups.c.creator_id,
        accounts.c.nickname,
        signups.c.id.label("signup_id"),
        signup_items.c.planned_quantity,
        signups.c.contact_phone,
        signups.c.contact_wechat,
    )
    .select_from(signup_items)
    .join(signups, signups.c.id == signup_items.c.signup_id)
    .join(products, products.c.id == signup_items.c.product_id)
    .join(accounts, accounts.c.id == signups.c.creator_id)
    .where(*_PLANNED)
    .order_by(signup_items.c.product_id, signups.c.id)
)


async def plan_totals(session: AsyncSession, campaign_id: str, shop_id: str) -> list[PlanTotal]:
    """The shop's products planned in the campaign's submitted signups, with the planned sum
    (`SUM … GROUP BY` in SQL)."""
    rows = await run(session, _PLAN_TOTALS, {"campaign": campaign_id, "shop": shop_id})
    return [PlanTotal(row.product_id, row.title, row.inventory, int(row.planned_total)) for row in rows]


async def plan_lines(session: AsyncSession, campaign_id: str, shop_id: str) -> list[PlanLine]:
    """Who plans how many of each of those products, by product and signup."""
    return [record_of(PlanLine, row) for row in await run(session, _PLAN_LINES, {"campaign": campaign_id, "shop": shop_id})]


# =========================================================================== finding creators
def _like(q: str) -> str:
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


_GMV_SINCE = (
    select(sales_orders.c.creator_id, gmv_sum().label("gmv"))
    .where(
        sales_orders.c.creator_id.in_(bindparam("ids", expanding=True)),
        sales_orders.c.paid_at >= bindparam("since"),
        sales_orders.c.paid_at <= bindparam("until"),
    )
    .group_by(sales_orders.c.creator_id)
)
_CARDS_OF = select(cards).where(
    cards.c.campaign_id == bindparam("campaign"), cards.c.creator_id.in_(bindparam("ids", expanding=True))
)


async def eligible_creators_page(
    session: AsyncSession, campaign_id: str, *, q: str | None, level_min: int | None, limit: int, cursor: str | None
) -> Page[CreatorRecord]:
    """The campaign's pre-selected creators; `q`: a case-insensitive part of the nickname (`%`
    and `_` match themselves)."""
    query = (
        select(accounts.c.id, accounts.c.nickname, accounts.c.level, accounts.c.followers)
        .join(eligible_creators, eligible_creators.c.creator_id == accounts.c.id)
        .where(eligible_creators.c.campaign_id == bindparam("campaign"))
    )
    if q:
        query = query.where(accounts.c.nickname.ilike(_like(q), escape="\\"))
    if level_min is not None:
        query = query.where(accounts.c.level >= level_min)
    return await keyset(
        session, query, accounts.c.id, CreatorRecord, limit=limit, cursor=cursor, params={"campaign": campaign_id}
    )


async def gmv_between(session: AsyncSession, creator_ids: list[str], since: datetime, until: datetime) -> dict[str, int]:
    """GMV of each creator's orders paid in [since, until] (one aggregate)."""
    if not creator_ids:
        return {}
    rows = await run(session, _GMV_SINCE, {"ids": creator_ids, "since": since, "until": until})
    return {row.creator_id: int(row.gmv or 0) for row in rows}


async def cards_of(session: AsyncSession, campaign_id: str, creator_ids: list[str]) -> dict[str, CardRecord]:
    if not creator_ids:
        return {}
    return {
        row.creator_id: record_of(CardRecord, row)
        for row in await run(session, _CARDS_OF, {"campaign": campaign_id, "ids": creator_ids})
    }


def _put_card(dialect_insert):
    statement = dialect_insert(cards).values({c.key: bindparam(f"v_{c.key}", type_=c.type) for c in cards.c})
    replaced = ("contact_phone", "contact_wechat", "intended_merchants", "cooperation_note", "updated_at")
    return statement.on_conflict_do_update(
        index_elements=["campaign_id", "creator_id"], set_={c: statement.excluded[c] for c in replaced}
    ).returning(*cards.c)


_PUT_CARD = {"postgresql": _put_card(pg_insert), "sqlite": _put_card(sqlite_insert)}


async def put_card(session: AsyncSession, values: dict[str, Any]) -> CardRecord:
    """Create or replace the creator's card of the campaign (every column of `cards`): one
    upsert, so two racing PUTs leave one card."""
    row = (await run(session, _PUT_CARD[dialect_of(session).name], {f"v_{k}": v for k, v in values.items()})).one()
    return record_of(CardRecord, row)


# =========================================================================== intents
def _intents_seen_by(role: str, account_id: str) -> Select:
    """A merchant sees its own intents; pre-selected creators and operators every intent."""
    query = (
        select(intents, accounts.c.shop_name)
        .outerjoin(accounts, accounts.c.id == intents.c.merchant_id)
        .where(intents.c.campaign_id == bindparam("campaign"))
    )
    return query.where(intents.c.merchant_id == account_id) if role == "merchant" else query


_INSERT_INTENT = insert(intents).values({c.key: bindparam(f"v_{c.key}", type_=c.type) for c in intents.c})


async def insert_intent(session: AsyncSession, intent: dict[str, Any], *, also: list[Part]) -> None:
    """The intent (every column of `intents`) and the `also` rows (its messages): one statement."""
    if also:
        await insert_together(session, (intents, [intent]), *also)
    else:
        await run(session, _INSERT_INTENT, {f"v_{k}": v for k, v in intent.items()})


async def intents_page(
    session: AsyncSession, campaign_id: str, role: str, account_id: str, *, limit: int, cursor: str | None
) -> Page[IntentRecord]:
    return await keyset(
        session,
        _intents_seen_by(role, account_id),
        intents.c.id,
        IntentRecord,
        limit=limit,
        cursor=cursor,
        params={"campaign": campaign_id},
    )


prepare_module(globals())
