"""Webhooks: subscriptions, fan-out from the event outbox, and the delivery relay (docs/events.md).

Fan-out is done by the relay from the outbox (`events`), not at event-write time: the core's
transitions stay untouched and no event written by any path (ORM or Core insert) is missed.

- `schemas.py`: what the endpoints take and answer;
- `subscriptions.py`: subscriptions and their deliveries;
- `fanout.py`: events → deliveries, in commit order behind a cursor (no settle window);
- `relay.py`: claim, POST, record, retry with backoff (`deliver_due`, a periodic job);
- `targets.py`: which URLs may receive webhooks (public addresses only), checked at
  registration and again at each delivery, which connects to the checked address.

The names other modules use are re-exported here; tests patch the relay's settings in
`relay.py`."""

from __future__ import annotations

from app.db.models.webhooks import WebhookFanoutCursor  # the cursor's table, for tests
from app.domain.webhooks.fanout import (
    FANOUT_BATCH,
    FANOUT_MAX_BATCHES,
    fan_out,
    matches,
)
from app.domain.webhooks.relay import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    CLAIM_BATCH,
    LEASE_SECONDS,
    MAX_ATTEMPTS,
    REQUEST_TIMEOUT_SECONDS,
    backoff,
    claim_due,
    deliver_due,
    event_body,
    sign,
)
from app.domain.webhooks.schemas import (
    AttemptOut,
    DeliveryOut,
    DeliveryStatus,
    SecretRotate,
    SecretRotatedOut,
    WebhookCreate,
    WebhookOut,
    WebhookUpdate,
)
from app.domain.webhooks.subscriptions import (
    create_subscription,
    delete_subscription,
    list_deliveries,
    list_subscriptions,
    rotate_secret,
    update_subscription,
)

__all__ = [
    "WebhookFanoutCursor",
    "AttemptOut",
    "BACKOFF_BASE_SECONDS",
    "BACKOFF_CAP_SECONDS",
    "CLAIM_BATCH",
    "DeliveryOut",
    "DeliveryStatus",
    "FANOUT_BATCH",
    "FANOUT_MAX_BATCHES",
    "LEASE_SECONDS",
    "MAX_ATTEMPTS",
    "REQUEST_TIMEOUT_SECONDS",
    "SecretRotate",
    "SecretRotatedOut",
    "WebhookCreate",
    "WebhookOut",
    "WebhookUpdate",
    "backoff",
    "claim_due",
    "create_subscription",
    "delete_subscription",
    "deliver_due",
    "event_body",
    "fan_out",
    "list_deliveries",
    "list_subscriptions",
    "matches",
    "rotate_secret",
    "sign",
    "update_subscription",
]
