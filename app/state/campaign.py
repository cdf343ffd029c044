"""Machine `campaign`: draft → publish → published → closed (operator `close`, or the timer at
`live_to`)."""

from __future__ import annotations

from datetime import datetime

from app.db.models.campaigns import Campaign
from app.db.repositories.campaigns import CampaignRecord
from app.state.core import Workflow, rule


def close_due(row: CampaignRecord, now: datetime) -> bool:
    """Whether the `close` timer (at `live_to`) has fallen due on a published campaign."""
    return row.state == "published" and row.live_to <= now


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
            guard=lambda ctx: ctx.now < ctx.row.live_to,
            description="make the campaign visible to merchants and creators",
        ),
        rule(
            "close",
            "published",
            "closed",
            ("operator", "system"),
            description="end the campaign (the timer at live_to, or an operator)",
        ),
    ],
)
