"""Every model module is imported here so `Base.metadata` is complete (Alembic, tests)."""

from app.db.models import accounts, broker, campaigns, facts, incentives, live_bases, outreach, platform, task_orders, webhooks  # noqa: F401  # noqa: F401
