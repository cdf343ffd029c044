"""Machine `check_in`: a creator scans a base's QR code (签到), confirms, and checks out."""

from __future__ import annotations

from app.db.models.live_bases import CheckIn
from app.db.repositories.live_bases import CheckInRecord
from app.state.core import Ctx, Workflow, rule


def _is_creator(ctx: Ctx) -> bool:
    return ctx.row.creator_id == ctx.actor.id


def _is_party_or_system(ctx: Ctx) -> bool:
    return ctx.actor.is_system or ctx.actor.id in (ctx.row.creator_id, ctx.row.agency_id)


def _eligible_now(ctx: Ctx) -> bool:
    return bool(ctx.extra.get("eligible"))


def _not_eligible_now(ctx: Ctx) -> bool:
    return not ctx.extra.get("eligible")


CHECK_IN = Workflow(
    "check_in",
    model=CheckIn,
    record=CheckInRecord,
    initial="pending_confirmation",
    states=["pending_confirmation", "rejected", "checked_in", "checked_out", "expired"],
    final_states=["rejected", "checked_out", "expired"],
    parties=lambda row: [row.creator_id, row.agency_id],
    description="A creator's check-in at a live base; the rules are evaluated on scan and again on confirm.",
    rules=[
        rule(
            "confirm",
            "pending_confirmation",
            "checked_in",
            "creator",
            guard=_is_creator,
            when=_eligible_now,
            description="the rules still pass",
            event="confirmed",
        ),
        rule(
            "confirm",
            "pending_confirmation",
            "rejected",
            "creator",
            guard=_is_creator,
            when=_not_eligible_now,
            description="the rules no longer pass: rejected with the reasons",
            event="confirmed",
        ),
        rule(
            "check-out",
            "checked_in",
            "checked_out",
            ("creator", "agency", "system"),
            guard=_is_party_or_system,
            description="the creator or the agency; the system at the end of the calendar day",
            event="checked_out",
        ),
        rule("expire", "pending_confirmation", "expired", "system", description="10 minutes unconfirmed", event="expired"),
    ],
)
