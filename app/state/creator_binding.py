"""Machine `creator_binding`: an agency invites a creator (达人绑定); the creator accepts."""

from __future__ import annotations

from app.db.models.live_bases import CreatorBinding
from app.state.core import Ctx, Workflow, rule


def _is_creator(ctx: Ctx) -> bool:
    return ctx.row.creator_id == ctx.actor.id


def _is_agency(ctx: Ctx) -> bool:
    return ctx.row.agency_id == ctx.actor.id


def _is_party(ctx: Ctx) -> bool:
    return _is_creator(ctx) or _is_agency(ctx)


CREATOR_BINDING = Workflow(
    "creator_binding", model=CreatorBinding, initial="invited",
    states=["invited", "active", "declined", "revoked", "expired", "terminated"],
    final_states=["declined", "revoked", "expired", "terminated"],
    parties=lambda row: [row.agency_id, row.creator_id],
    description="An agency binds a creator (达人绑定); a binding to a head annual agency is strong.",
    rules=[
        rule("accept", "invited", "active", "creator", guard=_is_creator,
             description="the creator accepts (409 already_bound with another active binding)"),
        rule("decline", "invited", "declined", "creator", guard=_is_creator),
        rule("revoke", "invited", "revoked", "agency", guard=_is_agency),
        rule("expire", "invited", "expired", "system", description="7 days after the invitation"),
        rule("terminate", "active", "terminated", ("creator", "agency"), guard=_is_party),
    ])
