"""Machine `redemption`: a provider asks to use part of a voucher for a merchant on a day;
the operator approves or rejects; an approved one is redeemed at the start of its use date
(timer) or when the operator fulfils it."""

from __future__ import annotations

from app.db.models.incentives import Redemption
from app.db.repositories.incentives import RedemptionRecord
from app.state.core import Workflow, rule

REDEMPTION = Workflow(
    "redemption",
    model=Redemption,
    initial="requested",
    record=RedemptionRecord,
    states=["requested", "approved", "redeemed", "rejected"],
    final_states=["redeemed", "rejected"],
    parties=lambda row: [row.provider_id, row.merchant_id],
    description="流量券兑换: using part of a voucher for a merchant",
    rules=[
        rule("approve", "requested", "approved", "operator", description="the operator approves", event="approved"),
        rule(
            "reject",
            ["requested", "approved"],
            "rejected",
            "operator",
            description="the operator rejects (with a reason); the amount returns to the voucher",
            event="rejected",
        ),
        rule(
            "fulfil",
            "approved",
            "redeemed",
            ["operator", "system"],
            description="timer at the start of use_date, or the operator",
            event="fulfilled",
        ),
    ],
)
