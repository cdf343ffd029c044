"""Machine `cooperation`: a creator's cooperation (合作) with one base at a time."""

from __future__ import annotations

from app.db.models.live_bases import Cooperation
from app.db.repositories.live_bases import CooperationRecord
from app.state.core import Ctx, Workflow, rule


def _is_party(ctx: Ctx) -> bool:
    return ctx.actor.id in (ctx.row.creator_id, ctx.row.agency_id)


COOPERATION = Workflow(
    "cooperation",
    model=Cooperation,
    record=CooperationRecord,
    initial="active",
    states=["active", "terminated", "ended"],
    final_states=["terminated", "ended"],
    parties=lambda row: [row.creator_id, row.agency_id],
    description="Created by a creator's first confirmed check-in at a base; lasts LC_COOPERATION_DAYS.",
    rules=[
        rule("terminate", "active", "terminated", ("creator", "agency"), guard=_is_party, event="terminated"),
        rule("end", "active", "ended", "system", description="at ends_at", event="ended"),
    ],
)
