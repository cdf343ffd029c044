"""Machine `task_order` (直播带货任务): a merchant books a creator's live session; the slot fee
is held in escrow from creation until it is paid, released or split."""

from __future__ import annotations

from app.db.models.task_orders import TaskOrder
from app.db.repositories.task_orders import TaskOrderRecord
from app.state.core import Ctx, Workflow, rule

ACTIVE = ["pending_acceptance", "waiting_live", "live", "pending_review"]
CANCELLED = ["cancelled_rejected", "cancelled_by_creator", "cancelled_by_merchant", "cancelled_timeout"]
FINAL = ["completed", *CANCELLED]

# state -> (status, sub_status): the list tabs
STATUS = {
    "pending_acceptance": ("pending_acceptance", None),
    "waiting_live": ("in_progress", "waiting_live"),
    "live": ("in_progress", "live"),
    "pending_review": ("in_progress", "pending_review"),
    "completed": ("completed", None),
    "cancelled_rejected": ("cancelled", "creator_rejected"),
    "cancelled_by_creator": ("cancelled", "creator_cancelled"),
    "cancelled_by_merchant": ("cancelled", "merchant_cancelled"),
    "cancelled_timeout": ("cancelled", "creator_timeout"),
}


def _is_merchant(ctx: Ctx) -> bool:
    return ctx.row.merchant_id == ctx.actor.id


def _is_creator(ctx: Ctx) -> bool:
    return ctx.row.creator_id == ctx.actor.id


TASK_ORDER = Workflow(
    "task_order",
    model=TaskOrder,
    initial="pending_acceptance",
    states=list(STATUS),
    final_states=FINAL,
    record=TaskOrderRecord,
    parties=lambda row: [row.merchant_id, row.creator_id],
    description="A slot-fee booking (坑位费) held in escrow: accept, go live, review, settle, cancel.",
    rules=[
        rule(
            "accept",
            "pending_acceptance",
            "waiting_live",
            "creator",
            guard=_is_creator,
            description="the creator takes the order; targeted plans are created",
        ),
        rule(
            "reject",
            "pending_acceptance",
            "cancelled_rejected",
            "creator",
            guard=_is_creator,
            description="the creator declines; the hold is released",
        ),
        rule(
            "remind",
            "pending_acceptance",
            None,
            "merchant",
            guard=_is_merchant,
            description="in-app + SMS reminder to the creator, once per day",
        ),
        rule(
            "expire",
            "pending_acceptance",
            "cancelled_timeout",
            "system",
            description="no answer within 24 h; the hold is released",
        ),
        rule(
            "start",
            "waiting_live",
            "live",
            "system",
            description="a live session of the creator started within the linking window",
        ),
        rule("end", "live", "pending_review", "system", description="the linked live session ended; the review deadline starts"),
        rule(
            "approve",
            "pending_review",
            "completed",
            "merchant",
            guard=_is_merchant,
            description="验收: the hold is paid to the creator",
        ),
        rule(
            "auto_approve",
            "pending_review",
            "completed",
            "system",
            description="the review deadline passed: the hold is paid to the creator",
        ),
        rule(
            "cancel",
            ACTIVE,
            "cancelled_by_merchant",
            "merchant",
            guard=_is_merchant,
            description="the merchant cancels; compensation rules decide the split",
        ),
        rule(
            "cancel",
            ["waiting_live", "live", "pending_review"],
            "cancelled_by_creator",
            "creator",
            guard=_is_creator,
            description="the creator cancels; the hold is released in full",
        ),
    ],
)
