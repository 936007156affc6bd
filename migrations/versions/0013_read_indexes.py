"""indexes for reads on a large Postgres database (bench/load.py): metric pages and the live
stream by (job, id) without touching the table, chart series without a scan of every job's
points, and the overview's latest results without a sort of every job

On Postgres an index holds only the columns it names: the (job, key, step, value, epoch) index
could not answer the chart queries (they also filter on id), and the planner served a job's
metric page from the primary key, reading every point written before the job's own. SQLite
puts the rowid (our id) in every index already, so there the INCLUDE columns are left out.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 12:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERIES = ["job_id", "key", "step", "value", "epoch"]


def upgrade() -> None:
    op.drop_index("ix_metrics_job_id_id", table_name="metrics")
    op.create_index(
        "ix_metrics_job_id_id",
        "metrics",
        ["job_id", "id"],
        postgresql_include=["key", "step", "epoch", "value"],
    )
    op.drop_index("ix_metrics_job_id_key_step", table_name="metrics")
    op.create_index("ix_metrics_job_id_key_step", "metrics", SERIES, postgresql_include=["id"])
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_finished_at"), ["finished_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_finished_at"))
    op.drop_index("ix_metrics_job_id_key_step", table_name="metrics")
    op.create_index("ix_metrics_job_id_key_step", "metrics", SERIES)
    op.drop_index("ix_metrics_job_id_id", table_name="metrics")
    op.create_index("ix_metrics_job_id_id", "metrics", ["job_id", "id"])
