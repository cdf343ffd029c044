"""The binding machine shared by `creator_binding` and `shop_binding`: an agency invites, the
invitee (a creator, or a merchant for its shop) accepts or declines, the agency may revoke, an
invitation expires after 7 days, either side terminates an active binding."""

from __future__ import annotations

from app.core.errors import Conflict
from app.state.core import Ctx, Verdict, Workflow, rule


def binding_workflow(
    name: str,
    *,
    model: type,
    record: type,
    invitee_role: str,
    invitee_column: str,
    description: str,
    accept_description: str = "",
    exclusive: bool = False,
) -> Workflow:
    """`exclusive`: an invitee holds one active binding at a time; its accept reads the other
    one's id from the fact `bound_elsewhere` the domain hands over (409 `already_bound`)."""

    def is_invitee(ctx: Ctx) -> bool:
        return getattr(ctx.row, invitee_column) == ctx.actor.id

    def may_accept(ctx: Ctx) -> Verdict:
        if not is_invitee(ctx):
            return False
        other = ctx.extra.get("bound_elsewhere") if exclusive else None
        if other is not None:
            return Conflict("you already have an active binding: terminate it first", code="already_bound", binding_id=other)
        return True

    def is_agency(ctx: Ctx) -> bool:
        return ctx.row.agency_id == ctx.actor.id

    def is_party(ctx: Ctx) -> bool:
        return is_invitee(ctx) or is_agency(ctx)

    return Workflow(
        name,
        model=model,
        record=record,
        initial="invited",
        states=["invited", "active", "declined", "revoked", "expired", "terminated"],
        final_states=["declined", "revoked", "expired", "terminated"],
        parties=lambda row: [row.agency_id, getattr(row, invitee_column)],
        description=description,
        rules=[
            rule("accept", "invited", "active", invitee_role, guard=may_accept, description=accept_description, event="accepted"),
            rule("decline", "invited", "declined", invitee_role, guard=is_invitee, event="declined"),
            rule("revoke", "invited", "revoked", "agency", guard=is_agency, event="revoked"),
            rule("expire", "invited", "expired", "system", description="7 days after the invitation", event="expired"),
            rule("terminate", "active", "terminated", (invitee_role, "agency"), guard=is_party, event="terminated"),
        ],
    )
