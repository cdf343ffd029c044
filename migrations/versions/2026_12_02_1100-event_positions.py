"""event stream: the writing transaction of each event (readers follow commit order), stream tickets

Revision ID: 5c1e0f7d2a90
Revises: 9feb6607cb99
Create Date: 2026-12-02 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.base
from app.db.base import current_transaction

revision: str = "5c1e0f7d2a90"
down_revision: str | None = "9feb6607cb99"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing events all get the migration's own transaction id: they keep their id order
    # among themselves, before every event written afterwards.
    op.add_column("events", sa.Column("tx", sa.BigInteger(), server_default=current_transaction(), nullable=False))
    op.create_index("ix_events_position", "events", ["tx", "id"])
    op.create_table(
        "stream_tickets",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("expires_at", app.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", app.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_tickets")),
    )
    op.create_index(op.f("ix_stream_tickets_expires_at"), "stream_tickets", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_stream_tickets_expires_at"), table_name="stream_tickets")
    op.drop_table("stream_tickets")
    op.drop_index("ix_events_position", table_name="events")
    op.drop_column("events", "tx")
