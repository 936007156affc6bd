"""index metrics by (job, key, step) for charts and downsampling; covering (value, epoch) so
that a downsampling scan never reads the table

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 15:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_metrics_job_id_key_step", "metrics", ["job_id", "key", "step", "value", "epoch"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_metrics_job_id_key_step", table_name="metrics")
