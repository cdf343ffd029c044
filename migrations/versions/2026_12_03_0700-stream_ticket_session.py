"""stream tickets belong to the login session that asked for them

Revision ID: 7c4e1a2b0700
Revises: 7b2d4e6f1250
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "7c4e1a2b0700"
down_revision = "7b2d4e6f1250"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stream_tickets") as batch:
        batch.add_column(sa.Column("session_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stream_tickets") as batch:
        batch.drop_column("session_id")
