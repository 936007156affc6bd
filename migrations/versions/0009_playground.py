"""playground: blind votes and batch comparisons

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.timeutil

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "votes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("model_a", sa.String(length=300), nullable=False),
        sa.Column("model_b", sa.String(length=300), nullable=False),
        sa.Column("winner", sa.String(length=8), nullable=False),
        sa.Column("prompt", sa.String(length=2000), nullable=False),
        sa.Column("created_at", app.core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "batch_runs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("max_tokens", sa.Integer(), nullable=False),
        sa.Column("temperature", sa.Float(), nullable=False),
        sa.Column("source_job", sa.String(length=64), nullable=True),
        sa.Column("created_at", app.core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", app.core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_batch_runs_created_at", "batch_runs", ["created_at"], unique=False)
    op.create_table(
        "batch_outputs",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("prompt_index", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=300), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("latency_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["batch_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("batch_id", "prompt_index", "model"),
    )


def downgrade() -> None:
    op.drop_table("batch_outputs")
    op.drop_index("ix_batch_runs_created_at", table_name="batch_runs")
    op.drop_table("batch_runs")
    op.drop_table("votes")
