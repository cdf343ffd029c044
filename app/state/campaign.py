"""Machine `campaign`: draft → publish → published → closed (operator `close`, or the timer at
`live_to`)."""

from __future__ import annotations

from datetime import datetime

from app.core.errors import Conflict
from app.db.models.campaigns import Campaign
from app.db.repositories.campaigns import CampaignRecord
from app.state.core import Ctx, Verdict, Workflow, rule


def close_due(row: CampaignRecord, now: datetime) -> bool:
    """Whether the `close` timer (at `live_to`) has fallen due on a published campaign."""
    return row.state == "published" and row.live_to <= now


def _before_live_end(ctx: Ctx) -> Verdict:
    """A campaign is published before its live window ends (409 `deadline_passed` after)."""
    return True if ctx.now < ctx.row.live_to else Conflict("the campaign's live window is over", code="deadline_passed")


CAMPAIGN = Workflow(
    "campaign",
    model=Campaign,
    initial="draft",
    states=["draft", "published", "closed"],
    final_states=["closed"],
    record=CampaignRecord,
    parties=lambda row: [row.created_by],
    description="A platform reward campaign (直播间奖励).",
    rules=[
        rule(
            "publish",
            "draft",
            "published",
            "operator",
            guard=_before_live_end,
            description="make the campaign visible to merchants and creators",
            event="published",
        ),
        rule(
            "close",
            "published",
            "closed",
            ("operator", "system"),
            description="end the campaign (the timer at live_to, or an operator)",
            event="closed",
        ),
    ],
)
