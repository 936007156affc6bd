"""job advice; merges

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.timeutil

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("advice", sa.JSON(), nullable=True))
    op.create_table(
        "merges",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("artifact_key", sa.String(length=512), nullable=True),
        sa.Column("created_at", app.core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", app.core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("merges", schema=None) as batch_op:
        batch_op.create_index("ix_merges_job_id", ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("merges", schema=None) as batch_op:
        batch_op.drop_index("ix_merges_job_id")
    op.drop_table("merges")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("advice")
