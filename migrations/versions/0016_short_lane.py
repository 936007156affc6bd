"""short lane: batch compares are claimed by a worker (heartbeat); merge status is an enum

- ``batch_runs.heartbeat_at``: a short-lane worker's last answer to a batch; a running batch
  not heard of for a minute lost its worker and is taken again.
- ``merges.status`` is the MergeStatus enum (stored as before, a string of up to 16
  characters): any value outside it from an older version is marked failed.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MERGE_STATUSES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")


def upgrade() -> None:
    with op.batch_alter_table("batch_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    known = ", ".join(f"'{s}'" for s in MERGE_STATUSES)
    op.execute(f"UPDATE merges SET status = 'failed' WHERE status NOT IN ({known})")
    with op.batch_alter_table("merges", schema=None) as batch_op:
        batch_op.alter_column(
            "status",
            existing_type=sa.String(length=16),
            type_=sa.Enum(
                *MERGE_STATUSES, name="mergestatus", native_enum=False, length=16, create_constraint=False
            ),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("merges", schema=None) as batch_op:
        batch_op.alter_column(
            "status",
            existing_type=sa.Enum(*MERGE_STATUSES, name="mergestatus", native_enum=False, length=16),
            type_=sa.String(length=16),
            existing_nullable=False,
        )
    with op.batch_alter_table("batch_runs", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
