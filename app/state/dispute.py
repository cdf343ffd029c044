"""Machine `dispute` (交易纠纷) on an ended task order: `open` → `resolved` (operator, with the
final split) | `withdrawn` (the party that opened it)."""

from __future__ import annotations

from app.core.errors import Forbidden
from app.db.models.task_orders import Dispute
from app.db.repositories.task_orders import DisputeRecord
from app.state.core import Ctx, Verdict, Workflow, rule


def _is_opener(ctx: Ctx) -> Verdict:
    """Only the party that opened a dispute withdraws it: the other party may never (403)."""
    return True if ctx.row.opened_by == ctx.actor.id else Forbidden("only the party that opened the dispute may withdraw it")


DISPUTE = Workflow(
    "dispute",
    model=Dispute,
    initial="open",
    states=["open", "resolved", "withdrawn"],
    final_states=["resolved", "withdrawn"],
    record=DisputeRecord,
    parties=lambda row: [row.merchant_id, row.creator_id],
    description="A dispute about a task order's money, settled by an operator.",
    rules=[
        rule(
            "resolve",
            "open",
            "resolved",
            "operator",
            description="the operator sets the final split of the order's amount",
            event="resolved",
        ),
        rule(
            "withdraw",
            "open",
            "withdrawn",
            ["merchant", "creator"],
            guard=_is_opener,
            description="the party that opened it withdraws it",
            event="withdrawn",
        ),
    ],
)
