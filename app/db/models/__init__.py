"""Every model module is imported here so `Base.metadata` is complete (Alembic, tests)."""

from app.db.models import accounts, facts, platform  # noqa: F401
from app.db.models import task_orders, campaigns, live_bases, outreach, incentives, webhooks  # noqa: F401
