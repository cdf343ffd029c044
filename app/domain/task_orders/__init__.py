"""The task orders module (直播带货任务 / 坑位费): task orders with escrow, live-session linking,
compensation, disputes. Choices where the spec is silent: docs/task-orders.md.

- `schemas.py`: what the endpoints take and answer;
- `views.py`: an order's representation, and loading an order the caller may see;
- `service.py`: creating and reading orders;
- `actions.py`: the transitions with their money, and the order's timers;
- `live_sessions.py`: live sessions linked to orders (the signal handlers), QR codes, targeted plans;
- `disputes.py`: disputes and their resolution.

Every statement is in `app/db/repositories/task_orders.py`; the handlers are listed in
`app/modules.py`, the demo step is `app/demo/task_orders.py`. The names other modules use are
re-exported here."""

from __future__ import annotations

from app.domain.task_orders.actions import (
    accept,
    approve,
    auto_approve_on_timer,
    cancel,
    compensation,
    expire_on_timer,
    reject,
    remind,
)
from app.domain.task_orders.disputes import DISPUTE_WINDOW, get_dispute, open_dispute, resolve_dispute, withdraw_dispute
from app.domain.task_orders.live_sessions import (
    list_targeted_plans,
    live_session_qr,
    on_live_session_ended,
    on_live_session_started,
)
from app.domain.task_orders.schemas import (
    CANCEL_REASONS,
    CancelIn,
    CancelReason,
    CancelReasonOut,
    CancelReasonValue,
    DisputeCreate,
    DisputeOut,
    DisputeResolve,
    LiveSessionInfo,
    OrderProductIn,
    OrderProductOut,
    Plan,
    SessionType,
    TargetedPlanOut,
    TaskOrderCreate,
    TaskOrderOut,
    TaskOrderRejectIn,
    WatchOut,
)
from app.domain.task_orders.service import counts, create_order, get_order, list_orders, order_history
from app.domain.task_orders.views import BOOKING_HORIZON, REF, qr_svg_url

__all__ = [
    "BOOKING_HORIZON",
    "CANCEL_REASONS",
    "CancelIn",
    "CancelReason",
    "CancelReasonOut",
    "CancelReasonValue",
    "DISPUTE_WINDOW",
    "DisputeCreate",
    "DisputeOut",
    "DisputeResolve",
    "LiveSessionInfo",
    "OrderProductIn",
    "OrderProductOut",
    "Plan",
    "REF",
    "SessionType",
    "TargetedPlanOut",
    "TaskOrderCreate",
    "TaskOrderOut",
    "TaskOrderRejectIn",
    "WatchOut",
    "accept",
    "approve",
    "auto_approve_on_timer",
    "cancel",
    "compensation",
    "counts",
    "create_order",
    "expire_on_timer",
    "get_dispute",
    "get_order",
    "list_orders",
    "list_targeted_plans",
    "live_session_qr",
    "on_live_session_ended",
    "on_live_session_started",
    "open_dispute",
    "order_history",
    "qr_svg_url",
    "reject",
    "remind",
    "resolve_dispute",
    "withdraw_dispute",
]
