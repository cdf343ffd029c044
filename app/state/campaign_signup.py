"""Machine `campaign_signup`: a pre-selected creator's signup to a campaign, decided by every
listed shop and by the platform, then traffic support, products, stock confirmations, live.

Per-shop steps (`merchant-approve`, `merchant-reject`, `merchant-confirm-stock`) have several
rules each: `when` picks at firing time whether this decision is the last one awaited (the
signup moves on) or not (an internal transition: the state stays, the version bumps). The
deciding shop is `ctx.extra["shop_id"]`; the signup row is locked while it is decided, so two
merchants deciding at once are serialised and exactly one of them moves it on.

The machine writes the signup's own row (`SignupRecord`); it is fired with the signup and its
parts (`SignupWithParts`: the campaign's product deadline, the listed shops, the planned
products), which the guards and the event's parties read. A record without its parts (the
core's re-read after a lost race, which the row lock rules out) allows no per-shop action."""

from __future__ import annotations

from datetime import datetime

from app.core.errors import Conflict
from app.core.times import iso_z
from app.db.models.campaigns import CampaignSignup
from app.db.repositories.campaigns import SignupRecord, SignupWithParts
from app.state.core import Ctx, Verdict, Workflow, rule

BEFORE_PRODUCTS = ("pending_merchant", "pending_platform", "approved", "traffic_granted")


def expiry_due(row: SignupWithParts, now: datetime) -> bool:
    """Whether the `expire` timer (at the campaign's `product_deadline`) has fallen due."""
    return row.state in BEFORE_PRODUCTS and row.product_deadline <= now


def _parts(ctx: Ctx) -> SignupWithParts | None:
    return ctx.row if isinstance(ctx.row, SignupWithParts) else None


def before_product_deadline(ctx: Ctx) -> Verdict:
    """Decisions and products are taken until the campaign's product deadline: after it,
    409 `deadline_passed` naming it."""
    row = _parts(ctx)
    if row is None:
        return False
    if ctx.now < row.product_deadline:
        return True
    return Conflict("the product deadline has passed", code="deadline_passed", deadline=iso_z(row.product_deadline))


def _shop(ctx: Ctx):
    row = _parts(ctx)
    return None if row is None else next((s for s in row.shops if s.shop_id == ctx.actor.id), None)


def _may_decide(ctx: Ctx) -> Verdict:
    shop = _shop(ctx)
    if shop is None or shop.decision != "pending":
        return False
    return before_product_deadline(ctx)


def _others(ctx: Ctx):
    me = ctx.extra.get("shop_id", ctx.actor.id)
    row = _parts(ctx)
    return [] if row is None else [s for s in row.shops if s.shop_id != me]


def _others_pending(ctx: Ctx) -> bool:
    return any(s.decision == "pending" for s in _others(ctx))


def _last_with_approval(ctx: Ctx) -> bool:
    return not _others_pending(ctx) and any(s.decision == "approved" for s in _others(ctx))


def _last_all_rejected(ctx: Ctx) -> bool:
    return not _others_pending(ctx) and not any(s.decision == "approved" for s in _others(ctx))


def _is_creator(ctx: Ctx) -> bool:
    return ctx.row.creator_id == ctx.actor.id


def _may_submit(ctx: Ctx) -> Verdict:
    return before_product_deadline(ctx) if _is_creator(ctx) else False


def _stock_shops(row: SignupWithParts) -> set[str]:
    return {i.shop_id for i in row.items}


def _may_confirm_stock(ctx: Ctx) -> bool:
    shop = _shop(ctx)
    return shop is not None and shop.shop_id in _stock_shops(ctx.row) and shop.stock_confirmed_at is None


def _others_unconfirmed(ctx: Ctx) -> bool:
    me = ctx.extra.get("shop_id", ctx.actor.id)
    row = _parts(ctx)
    if row is None:
        return False
    with_products = _stock_shops(row)
    return any(s.stock_confirmed_at is None for s in row.shops if s.shop_id != me and s.shop_id in with_products)


def _parties(row: SignupRecord) -> list[str]:
    shops = row.shops if isinstance(row, SignupWithParts) else ()
    return [row.creator_id, *(s.shop_id for s in shops)]


CAMPAIGN_SIGNUP = Workflow(
    "campaign_signup",
    model=CampaignSignup,
    initial="pending_merchant",
    states=[
        "pending_merchant",
        "pending_platform",
        "merchant_rejected",
        "approved",
        "platform_rejected",
        "traffic_granted",
        "products_submitted",
        "stock_confirmed",
        "ready",
        "live",
        "finished",
        "withdrawn",
        "expired",
    ],
    final_states=["merchant_rejected", "platform_rejected", "finished", "withdrawn", "expired"],
    record=SignupRecord,
    parties=_parties,
    description="A creator's signup to a reward campaign (达人报名).",
    rules=[
        rule(
            "merchant-approve",
            "pending_merchant",
            None,
            "merchant",
            guard=_may_decide,
            when=_others_pending,
            description="a listed shop approves; other shops still to decide",
            event="merchant_approved",
        ),
        rule(
            "merchant-approve",
            "pending_merchant",
            "pending_platform",
            "merchant",
            guard=_may_decide,
            when=lambda ctx: not _others_pending(ctx),
            description="the last listed shop approves",
            event="merchant_approved",
        ),
        rule(
            "merchant-reject",
            "pending_merchant",
            None,
            "merchant",
            guard=_may_decide,
            when=_others_pending,
            description="a listed shop rejects; other shops still to decide",
            event="merchant_rejected",
        ),
        rule(
            "merchant-reject",
            "pending_merchant",
            "pending_platform",
            "merchant",
            guard=_may_decide,
            when=_last_with_approval,
            description="the last shop rejects, another one approved",
            event="merchant_rejected",
        ),
        rule(
            "merchant-reject",
            "pending_merchant",
            "merchant_rejected",
            "merchant",
            guard=_may_decide,
            when=_last_all_rejected,
            description="the last shop rejects, none approved",
            event="merchant_rejected",
        ),
        rule("platform-approve", "pending_platform", "approved", "operator", event="platform_approved"),
        rule("platform-reject", "pending_platform", "platform_rejected", "operator", event="platform_rejected"),
        rule("grant-traffic", "approved", "traffic_granted", "operator", description="流量扶持", event="traffic_granted"),
        rule(
            "submit-products",
            ("traffic_granted", "products_submitted"),
            "products_submitted",
            "creator",
            guard=_may_submit,
            description="提报商品 (a revision resets the stock confirmations)",
            event="products_submitted",
        ),
        rule(
            "merchant-confirm-stock",
            "products_submitted",
            None,
            "merchant",
            guard=_may_confirm_stock,
            when=_others_unconfirmed,
            description="a shop confirms its stock; others still to confirm",
            event="merchant_stock_confirmed",
        ),
        rule(
            "merchant-confirm-stock",
            "products_submitted",
            "stock_confirmed",
            "merchant",
            guard=_may_confirm_stock,
            when=lambda ctx: not _others_unconfirmed(ctx),
            description="the last shop with products confirms its stock",
            event="merchant_stock_confirmed",
        ),
        rule(
            "platform-confirm-stock",
            "stock_confirmed",
            "ready",
            "operator",
            description="待开播",
            event="platform_stock_confirmed",
        ),
        rule("start-live", "ready", "live", "system", description="a live session of the creator starts", event="live_started"),
        rule("end-live", "live", "finished", "system", description="that live session ends", event="live_ended"),
        rule("withdraw", ("pending_merchant", "pending_platform"), "withdrawn", "creator", guard=_is_creator, event="withdrawn"),
        rule("expire", BEFORE_PRODUCTS, "expired", "system", description="the timer at product_deadline", event="expired"),
    ],
)
