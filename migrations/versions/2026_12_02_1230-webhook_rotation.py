"""webhooks: the previous secret of a rotation (signed with for 24 h), the failing streak that
disables an endpoint after 5 days, and why a webhook is disabled

Revision ID: 7d3b9a1c4e52
Revises: 5c1e0f7d2a90
Create Date: 2026-12-02 12:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.base

revision: str = "7d3b9a1c4e52"
down_revision: str | None = "5c1e0f7d2a90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.add_column(sa.Column("previous_secret", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("previous_secret_expires_at", app.db.base.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("failing_since", app.db.base.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("disabled_reason", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.drop_column("disabled_reason")
        batch.drop_column("failing_since")
        batch.drop_column("previous_secret_expires_at")
        batch.drop_column("previous_secret")
