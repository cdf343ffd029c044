"""Rules of the live bases module (达人直播基地): bases and their home pages, creator and shop
bindings, and a base's statistics. The product pool is in `pool.py`, check-in codes in `qr.py`,
check-ins and cooperations in `check_ins.py`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.i18n import msg, term
from app.db.base import id_for
from app.db.bulk import insert_together
from app.db.models.live_bases import LiveBase
from app.db.repositories import live_bases as repo
from app.db.repositories.live_bases import (
    CreatorBindingFacts,
    CreatorBindingRecord,
    LiveBaseRecord,
    ShopBindingRecord,
)
from app.domain.accounts import require_role
from app.domain.live_bases import pool
from app.domain.live_bases.schemas import (
    AgencyCard,
    CreatorBindingCreate,
    CreatorBindingOut,
    CreatorBindingPatch,
    CreatorStats,
    LiveBaseCreate,
    LiveBaseDetail,
    LiveBaseOut,
    ProductStats,
    ShopBindingCreate,
    ShopBindingOut,
    StatsOut,
)
from app.domain.notifications import message_rows
from app.domain.products import ProductOut
from app.domain.schemas import PageOut, TransitionOut
from app.state import clock
from app.state.core import Actor, Workflow, history
from app.state.creator_binding import CREATOR_BINDING
from app.state.shop_binding import SHOP_BINDING
from app.state.timers import fire_due, new_timer, page_as_of_now

INVITATION_DAYS = 7
HOME_PAGE_PRODUCTS = 100


def is_operator(actor: Actor) -> bool:
    return actor.role == "operator"


async def transitions_of(session: AsyncSession, machine: str, entity_id: str) -> list[TransitionOut]:
    return [TransitionOut.model_validate(row) for row in await history(session, machine, entity_id)]


# -- bases -----------------------------------------------------------------------------------
def _base_out(base: LiveBaseRecord) -> LiveBaseOut:
    return LiveBaseOut(id=base.id, agency_id=base.agency_id, name=base.name, address=base.address, created_at=base.created_at)


async def create_base(session: AsyncSession, actor: Actor, body: LiveBaseCreate) -> LiveBaseOut:
    base = await repo.insert_base(
        session,
        {
            "id": id_for(LiveBase),
            "agency_id": actor.id,
            "name": body.name,
            "address": body.address,
            "created_at": await clock.now(session),
        },
    )
    return _base_out(base)


async def list_bases(session: AsyncSession, actor: Actor, *, limit: int, cursor: str | None) -> PageOut[LiveBaseOut]:
    page = await repo.bases_page(session, actor.role, actor.id, limit=limit, cursor=cursor)
    return PageOut[LiveBaseOut](items=[_base_out(b) for b in page.items], next_cursor=page.next_cursor)


async def base_detail(session: AsyncSession, actor: Actor, base_id: str) -> LiveBaseDetail:
    found = await repo.visible_base_with_agency(session, actor.role, actor.id, base_id)
    if found is None:
        raise NotFound("no such live base")
    base = found.base
    shops = await repo.active_shops_of(session, base.agency_id)
    products = await repo.listed_products_of(session, base.agency_id, HOME_PAGE_PRODUCTS)
    return LiveBaseDetail(
        id=base.id,
        agency_id=base.agency_id,
        name=base.name,
        address=base.address,
        created_at=base.created_at,
        agency=AgencyCard(id=base.agency_id, name=found.agency_name, head_annual=found.head_annual),
        shops=[pool.shop_card(s) for s in shops],
        products=[ProductOut.model_validate(p) for p in products],
    )


async def owned_base(session: AsyncSession, actor: Actor, base_id: str) -> LiveBaseRecord:
    """A base of the calling agency (any base for an operator)."""
    base = await repo.base_by_id(session, base_id)
    if base is None or not (base.agency_id == actor.id or is_operator(actor)):
        raise NotFound("no such live base")
    return base


async def stats(session: AsyncSession, actor: Actor, base_id: str, start: datetime | None, end: datetime | None) -> StatsOut:
    base = await owned_base(session, actor, base_id)
    end = end or await clock.now(session)
    start = start or end - timedelta(days=30)
    if start >= end:
        raise ValidationFailed("'from' must be before 'to'", loc=["query", "from"])
    if end - start > timedelta(days=366):
        raise ValidationFailed("at most 366 days at a time", loc=["query", "to"])
    found = await repo.base_stats(session, base, start, end)
    return StatsOut(
        base_id=base.id,
        from_=start,
        to=end,
        gmv_fen=found.gmv_fen,
        orders=found.orders,
        check_ins=found.check_ins,
        live_sessions=found.live_sessions,
        by_creator=[
            CreatorStats(creator_id=s.key, nickname=s.name, gmv_fen=s.gmv_fen, orders=s.orders) for s in found.by_creator
        ],
        by_product=[
            ProductStats(product_id=s.key, title=s.name or "", gmv_fen=s.gmv_fen, orders=s.orders) for s in found.by_product
        ],
    )


# -- bindings --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _BindingKind:
    """What differs between a creator binding and a shop binding: the invited party."""

    workflow: Workflow
    record: type[Any]
    party: str  # the invited account's column
    party_role: str  # and its role
    noun: str

    def sees(self, row: Any, actor: Actor) -> bool:
        return is_operator(actor) or actor.id in (row.agency_id, getattr(row, self.party))


_CREATOR = _BindingKind(CREATOR_BINDING, CreatorBindingRecord, "creator_id", "creator", "creator")
_SHOP = _BindingKind(SHOP_BINDING, ShopBindingRecord, "shop_id", "merchant", "shop")
_DATED = {"accept": "began_at", "terminate": "ended_at"}  # the columns a transition dates


async def _invite(
    session: AsyncSession, actor: Actor, kind: _BindingKind, party_id: str, fields: dict[str, Any], message: tuple[str, str]
) -> tuple[Any, bool]:
    """The new invitation, and whether the agency is a head annual agency."""
    await require_role(session, party_id, kind.party_role, loc=["body", kind.party])
    # The inviting agency's row is locked: its invitations are checked for an open one and
    # created one at a time, so two racing invitations of one pair never both succeed.
    head_annual = bool(await repo.lock_account(session, actor.id))
    now = await clock.now(session)
    workflow = kind.workflow
    existing = await repo.open_binding_of_pair(session, workflow.table, actor.id, party_id, now)
    if existing is not None:
        binding_id, state = existing
        raise Conflict(
            msg("this {party} is already bound to or invited by this agency", party=term(kind.noun)),
            code="already_bound" if state == "active" else "already_invited",
            binding_id=binding_id,
        )
    expires_at = now + timedelta(days=INVITATION_DAYS)
    row, parts = workflow.creation(
        {
            "id": id_for(workflow.model),
            "agency_id": actor.id,
            kind.party: party_id,
            **fields,
            "invited_at": now,
            "expires_at": expires_at,
            "began_at": None,
            "ended_at": None,
        },
        actor,
        now,
    )
    await insert_together(
        session,
        *parts,
        new_timer(workflow.name, row.id, "expire", expires_at),
        *message_rows(party_id, f"{workflow.name}.invited", *message, {"binding_id": row.id}, now),
    )
    return row, head_annual


async def _visible_binding(session: AsyncSession, actor: Actor, kind: _BindingKind, binding_id: str) -> tuple[Any, datetime]:
    """The binding as of now (an invitation past its expiry is expired first, as the sweeper
    would have) and business time. No lock: a transition's conditional UPDATE sees whether the
    binding moved since."""
    row = await repo.binding(session, kind.workflow.table, kind.record, binding_id)
    if row is None or not kind.sees(row, actor):
        raise NotFound(msg("no such {party} binding", party=term(kind.noun)))
    now = await clock.now(session)
    if row.state == "invited" and row.expires_at <= now:
        await fire_due(session, entity_id=binding_id)
        row = await repo.binding(session, kind.workflow.table, kind.record, binding_id)
    return row, now


async def _fire(
    session: AsyncSession,
    actor: Actor,
    kind: _BindingKind,
    row: Any,
    action: str,
    reason: str | None,
    now: datetime,
    extra: dict[str, Any] | None = None,
) -> Any:
    column = _DATED.get(action)
    return await kind.workflow.fire(
        session, row, action, actor, now=now, reason=reason, extra=extra, changes={column: now} if column else None
    )


async def _binding_history(session: AsyncSession, actor: Actor, kind: _BindingKind, binding_id: str) -> list[TransitionOut]:
    await _visible_binding(session, actor, kind, binding_id)
    return await transitions_of(session, kind.workflow.name, binding_id)


# -- creator bindings ------------------------------------------------------------------------
def _creator_binding_out(row: CreatorBindingRecord, facts: CreatorBindingFacts, actor: Actor, now: datetime) -> CreatorBindingOut:
    return CreatorBindingOut(
        id=row.id,
        agency_id=row.agency_id,
        creator_id=row.creator_id,
        commission_bp=row.commission_bp,
        strong=facts.strong,
        state=row.state,
        version=row.version,
        allowed_actions=CREATOR_BINDING.allowed_actions(row, actor, now, {"bound_elsewhere": facts.bound_elsewhere}),
        invited_at=row.invited_at,
        expires_at=row.expires_at,
        began_at=row.began_at,
        ended_at=row.ended_at,
        live_count=facts.live_count,
    )


async def _creator_bindings_out(
    session: AsyncSession, rows: Sequence[CreatorBindingRecord], actor: Actor, now: datetime
) -> list[CreatorBindingOut]:
    """The answers of bindings: their strength and live counts in one statement for them all."""
    facts = await repo.creator_binding_facts(session, [r.id for r in rows])
    return [_creator_binding_out(r, facts[r.id], actor, now) for r in rows]


async def _creator_binding_answer(
    session: AsyncSession, row: CreatorBindingRecord, actor: Actor, now: datetime
) -> CreatorBindingOut:
    return (await _creator_bindings_out(session, [row], actor, now))[0]


async def create_creator_binding(session: AsyncSession, actor: Actor, body: CreatorBindingCreate) -> CreatorBindingOut:
    row, strong = await _invite(
        session,
        actor,
        _CREATOR,
        body.creator_id,
        {"commission_bp": body.commission_bp},
        ("绑定邀约", "An agency invites you to bind (达人绑定)."),
    )
    return _creator_binding_out(row, CreatorBindingFacts(strong, None), actor, row.invited_at)


async def get_creator_binding(session: AsyncSession, actor: Actor, binding_id: str) -> CreatorBindingOut:
    row, now = await _visible_binding(session, actor, _CREATOR, binding_id)
    return await _creator_binding_answer(session, row, actor, now)


async def list_creator_bindings(
    session: AsyncSession, actor: Actor, *, state: str | None, limit: int, cursor: str | None
) -> PageOut[CreatorBindingOut]:
    page = await page_as_of_now(
        session,
        CREATOR_BINDING.name,
        lambda: repo.bindings_page(
            session, CREATOR_BINDING.table, CreatorBindingRecord, actor.role, actor.id, state=state, limit=limit, cursor=cursor
        ),
    )
    items = await _creator_bindings_out(session, page.items, actor, await clock.now(session))
    return PageOut[CreatorBindingOut](items=items, next_cursor=page.next_cursor)


async def creator_binding_history(session: AsyncSession, actor: Actor, binding_id: str) -> list[TransitionOut]:
    return await _binding_history(session, actor, _CREATOR, binding_id)


async def patch_creator_binding(
    session: AsyncSession, actor: Actor, binding_id: str, body: CreatorBindingPatch
) -> CreatorBindingOut:
    row, now = await _visible_binding(session, actor, _CREATOR, binding_id)
    if row.agency_id != actor.id:
        raise NotFound("no such creator binding")
    CREATOR_BINDING.expect_version(row, actor, now)  # If-Match on the PATCH
    updated = await repo.set_commission(session, row.id, row.version, body.commission_bp) if row.state == "active" else None
    if updated is None:
        current = await repo.binding(session, CREATOR_BINDING.table, CreatorBindingRecord, binding_id)
        if current is not None and current.state == "active":  # changed by a racing request: it won
            raise Conflict("the binding changed meanwhile; read it again", code="conflict", version=current.version)
        raise Conflict(
            "the commission is set while the binding is active",
            code="binding_not_active",
            state=current.state if current else row.state,
        )
    return await _creator_binding_answer(session, updated, actor, now)


async def fire_creator_binding(
    session: AsyncSession, actor: Actor, binding_id: str, action: str, reason: str | None
) -> CreatorBindingOut:
    row, now = await _visible_binding(session, actor, _CREATOR, binding_id)
    extra = None
    if action == "accept" and actor.role in CREATOR_BINDING.roles_of(action):
        # one creator's accepts are decided one at a time: the second sees the first's binding
        # (the machine's guard refuses with 409 already_bound)
        await repo.lock_account(session, row.creator_id)
        extra = {"bound_elsewhere": await repo.other_active_binding(session, row.creator_id, row.id)}
    row = await _fire(session, actor, _CREATOR, row, action, reason, now, extra)
    return await _creator_binding_answer(session, row, actor, now)


# -- shop bindings ---------------------------------------------------------------------------
def shop_binding_out(row: ShopBindingRecord, actor: Actor, now: datetime) -> ShopBindingOut:
    return ShopBindingOut(
        id=row.id,
        agency_id=row.agency_id,
        shop_id=row.shop_id,
        type=row.binding_type,
        state=row.state,
        version=row.version,
        allowed_actions=SHOP_BINDING.allowed_actions(row, actor, now),
        invited_at=row.invited_at,
        expires_at=row.expires_at,
        began_at=row.began_at,
        ended_at=row.ended_at,
    )


async def create_shop_binding(session: AsyncSession, actor: Actor, body: ShopBindingCreate) -> ShopBindingOut:
    row, _ = await _invite(
        session,
        actor,
        _SHOP,
        body.shop_id,
        {"binding_type": body.type},
        ("直播基地合作邀约", "An agency invites your shop to a live base cooperation."),
    )
    return shop_binding_out(row, actor, row.invited_at)


async def get_shop_binding(session: AsyncSession, actor: Actor, binding_id: str) -> ShopBindingOut:
    row, now = await _visible_binding(session, actor, _SHOP, binding_id)
    return shop_binding_out(row, actor, now)


async def list_shop_bindings(
    session: AsyncSession, actor: Actor, *, state: str | None, limit: int, cursor: str | None
) -> PageOut[ShopBindingOut]:
    page = await page_as_of_now(
        session,
        SHOP_BINDING.name,
        lambda: repo.bindings_page(
            session, SHOP_BINDING.table, ShopBindingRecord, actor.role, actor.id, state=state, limit=limit, cursor=cursor
        ),
    )
    now = await clock.now(session)
    return PageOut[ShopBindingOut](items=[shop_binding_out(r, actor, now) for r in page.items], next_cursor=page.next_cursor)


async def shop_binding_history(session: AsyncSession, actor: Actor, binding_id: str) -> list[TransitionOut]:
    return await _binding_history(session, actor, _SHOP, binding_id)


async def fire_shop_binding(
    session: AsyncSession, actor: Actor, binding_id: str, action: str, reason: str | None
) -> ShopBindingOut:
    row, now = await _visible_binding(session, actor, _SHOP, binding_id)
    row = await _fire(session, actor, _SHOP, row, action, reason, now)
    if action == "accept":
        await pool.shop_bound(session, row.agency_id, row.shop_id, now)
    elif action == "terminate":
        await pool.shop_unbound(session, row.agency_id, row.shop_id)
    return shop_binding_out(row, actor, now)
