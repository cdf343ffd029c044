"""Machine `incentive_statement`: a provider's monthly result, draft until the operator
publishes the month."""

from __future__ import annotations

from app.db.models.incentives import IncentiveStatement
from app.db.repositories.incentives import StatementRecord
from app.state.core import Workflow, rule

INCENTIVE_STATEMENT = Workflow(
    "incentive_statement",
    model=IncentiveStatement,
    initial="draft",
    record=StatementRecord,
    states=["draft", "published"],
    final_states=["published"],
    parties=lambda row: [row.provider_id],
    description="a provider's monthly incentive statement",
    rules=[
        rule(
            "publish",
            "draft",
            "published",
            "operator",
            description="the operator publishes the month (vouchers are issued)",
            event="published",
        ),
    ],
)
