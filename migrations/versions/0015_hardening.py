"""login attempts counted atomically; supervised processes; jobs on private files are private

- ``login_throttle``: attempts per username and per address in the current window, counted
  with one upsert before the password is checked (parallel guesses cannot pass the limit).
- ``processes``: what `tunedeck run` supervises and how it is doing (restarts, last exit),
  shown on the overview's workers panel.
- A job trained or validated on a private file is private: whoever may see a job may see its
  data. Jobs made before the rule get it now.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=100), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
    )
    op.create_table(
        "processes",
        sa.Column("id", sa.String(length=300), primary_key=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("restarts", sa.Integer(), nullable=False),
        sa.Column("last_exit", sa.String(length=100), nullable=True),
        sa.Column("last_exit_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_processes_updated_at", "processes", ["updated_at"])
    op.execute(
        "UPDATE jobs SET private = true WHERE private = false AND ("
        " training_file IN (SELECT id FROM files WHERE private = true)"
        " OR validation_file IN (SELECT id FROM files WHERE private = true))"
    )


def downgrade() -> None:
    op.drop_index("ix_processes_updated_at", table_name="processes")
    op.drop_table("processes")
    op.drop_table("login_throttle")
