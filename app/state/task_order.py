"""Machine `task_order` (直播带货任务): a merchant books a creator's live session; the slot fee
is held in escrow from creation until it is paid, released or split."""

from __future__ import annotations

from app.core.clock import local_date, next_local_midnight
from app.core.enums import OneOf
from app.core.errors import TooManyRequests
from app.db.models.task_orders import TaskOrder
from app.db.repositories.task_orders import TaskOrderRecord
from app.state.core import Ctx, Verdict, Workflow, rule

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
STATUS_ENUM = OneOf("TaskOrderStatus", [status for status, _ in STATUS.values()])
SUB_STATUS_ENUM = OneOf("TaskOrderSubStatus", [sub for _, sub in STATUS.values() if sub])


def _is_merchant(ctx: Ctx) -> bool:
    return ctx.row.merchant_id == ctx.actor.id


def _is_creator(ctx: Ctx) -> bool:
    return ctx.row.creator_id == ctx.actor.id


def _may_remind(ctx: Ctx) -> Verdict:
    """The order's merchant, once per calendar day (Asia/Shanghai): a second reminder that day
    is 429 `rate_limited` until local midnight, and `remind` is not offered meanwhile."""
    if not _is_merchant(ctx):
        return False
    if ctx.row.last_reminded_on == local_date(ctx.now).isoformat():
        return TooManyRequests(
            "the creator was already reminded today (once per day, Asia/Shanghai)",
            retry_after=int((next_local_midnight(ctx.now) - ctx.now).total_seconds()) + 1,
        )
    return True


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
            event="accepted",
        ),
        rule(
            "reject",
            "pending_acceptance",
            "cancelled_rejected",
            "creator",
            guard=_is_creator,
            description="the creator declines; the hold is released",
            event="rejected",
        ),
        rule(
            "remind",
            "pending_acceptance",
            None,
            "merchant",
            guard=_may_remind,
            description="in-app + SMS reminder to the creator, once per day",
            event="reminded",
        ),
        rule(
            "expire",
            "pending_acceptance",
            "cancelled_timeout",
            "system",
            description="no answer within 24 h; the hold is released",
            event="expired",
        ),
        rule(
            "start",
            "waiting_live",
            "live",
            "system",
            description="a live session of the creator started within the linking window",
            event="started",
        ),
        rule(
            "end",
            "live",
            "pending_review",
            "system",
            description="the linked live session ended; the review deadline starts",
            event="ended",
        ),
        rule(
            "approve",
            "pending_review",
            "completed",
            "merchant",
            guard=_is_merchant,
            description="验收: the hold is paid to the creator",
            event="approved",
        ),
        rule(
            "auto_approve",
            "pending_review",
            "completed",
            "system",
            description="the review deadline passed: the hold is paid to the creator",
            event="auto_approved",
        ),
        rule(
            "cancel",
            ACTIVE,
            "cancelled_by_merchant",
            "merchant",
            guard=_is_merchant,
            description="the merchant cancels; compensation rules decide the split",
            event="cancelled",
        ),
        rule(
            "cancel",
            ["waiting_live", "live", "pending_review"],
            "cancelled_by_creator",
            "creator",
            guard=_is_creator,
            description="the creator cancels; the hold is released in full",
            event="cancelled",
        ),
    ],
)
