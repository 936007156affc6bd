"""workers and their devices

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.timeutil

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(length=255), nullable=False),
        sa.Column("device_count", sa.Integer(), nullable=False),
        sa.Column("device_memory_gib", sa.Float(), nullable=True),
        sa.Column("queue", sa.String(length=255), nullable=False),
        sa.Column("started_at", app.core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", app.core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", app.core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_workers_heartbeat_at", "workers", ["heartbeat_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_workers_heartbeat_at", table_name="workers")
    op.drop_table("workers")
