"""Machine `voucher`: a traffic voucher is available until its balance is redeemed
(`used_up`) or it expires (timer)."""

from __future__ import annotations

from app.db.models.incentives import Voucher
from app.db.repositories.incentives import VoucherRecord
from app.state.core import Workflow, rule

VOUCHER = Workflow(
    "voucher",
    model=Voucher,
    initial="available",
    record=VoucherRecord,
    states=["available", "used_up", "expired"],
    final_states=["used_up", "expired"],
    parties=lambda row: [row.provider_id],
    description="a traffic voucher (流量券)",
    rules=[
        rule("exhaust", "available", "used_up", "system", description="the last of the balance was redeemed", event="exhausted"),
        rule(
            "expire",
            "available",
            "expired",
            "system",
            description="timer: the earlier of 30 days after publication and the 10th of the next month",
            event="expired",
        ),
    ],
)
