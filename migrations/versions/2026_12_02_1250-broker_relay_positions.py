"""broker relay: the outbox position published to each broker target, and the relay's lease

Revision ID: 7b2d4e6f1250
Revises: 7a3d5e9c1b20
Create Date: 2026-12-02 12:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.base

revision: str = "7b2d4e6f1250"
down_revision: str | None = "7a3d5e9c1b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "broker_relay_positions",
        sa.Column("broker", sa.String(length=300), nullable=False),
        sa.Column("tx", sa.BigInteger(), nullable=False),
        sa.Column("event_key", sa.String(length=40), nullable=False),
        sa.Column("last_event_id", sa.String(length=40), nullable=True),
        sa.Column("published", sa.BigInteger(), nullable=False),
        sa.Column("lease_until", app.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("claim_token", sa.String(length=40), nullable=True),
        sa.Column("updated_at", app.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("broker", name=op.f("pk_broker_relay_positions")),
    )


def downgrade() -> None:
    op.drop_table("broker_relay_positions")
