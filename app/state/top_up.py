"""Machine `top_up`: a wallet recharge. `online` is confirmed by the payment-gateway adapter
(as `system`), `bank_transfer` (线下对公转账) by an operator; a pending top-up expires after
`LC_TOP_UP_EXPIRY_DAYS` days."""

from __future__ import annotations

from app.db.models.task_orders import TopUp
from app.db.repositories.wallet import TopUpRecord
from app.state.core import Workflow, rule

TOP_UP = Workflow(
    "top_up",
    model=TopUp,
    initial="pending",
    states=["pending", "succeeded", "rejected", "expired"],
    final_states=["succeeded", "rejected", "expired"],
    record=TopUpRecord,
    parties=lambda row: [row.account_id],
    description="A wallet recharge (充值): online through the payment gateway, or a bank transfer confirmed by an operator.",
    rules=[
        rule(
            "confirm",
            "pending",
            "succeeded",
            ["operator", "system"],
            description="the money arrived: the wallet is credited",
            event="confirmed",
        ),
        rule("reject", "pending", "rejected", "operator", description="the transfer was not found", event="rejected"),
        rule("expire", "pending", "expired", "system", description="7 days without a decision", event="expired"),
    ],
)
