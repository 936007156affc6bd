"""dataset versions: cleaned copies point at their parent

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 12:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("cleaning", sa.JSON(), nullable=True))
        batch_op.create_index("ix_files_parent_id", ["parent_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index("ix_files_parent_id")
        batch_op.drop_column("cleaning")
        batch_op.drop_column("version")
        batch_op.drop_column("parent_id")
