"""scheduling: job priority, memory estimate, attempt start and GPU/device seconds; per-user limits

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.timeutil

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="5"))
        batch_op.add_column(sa.Column("memory_estimate_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("attempt_started_at", app.core.timeutil.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("attempt_gpus", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("gpu_seconds", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("device_seconds", sa.Float(), nullable=False, server_default="0"))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_concurrent_jobs", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("max_concurrent_jobs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        for column in (
            "device_seconds",
            "gpu_seconds",
            "attempt_gpus",
            "attempt_started_at",
            "memory_estimate_bytes",
            "priority",
        ):
            batch_op.drop_column(column)
