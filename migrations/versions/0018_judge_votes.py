"""judge votes: a model judging a batch compare"s answers pairwise, recorded beside people"s votes

- ``votes.judge`` (None: a person"s blind vote) and ``votes.batch_id`` (the batch a judge read).
- ``batch_runs.judge``, ``judge_status``, ``judge_error``: the judge asked for, and how it went.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 20:53:46
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batch_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("judge", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("judge_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("judge_error", sa.String(length=2000), nullable=True))

    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("judge", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("batch_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_votes_batch_id"), ["batch_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_votes_batch_id"))
        batch_op.drop_column("batch_id")
        batch_op.drop_column("judge")

    with op.batch_alter_table("batch_runs", schema=None) as batch_op:
        batch_op.drop_column("judge_error")
        batch_op.drop_column("judge_status")
        batch_op.drop_column("judge")
