"""Evaluations, in the OpenAI Evals shape: an eval (what an item looks like, and the criteria that
grade a model's answer to it), its runs (one model answering the eval's items), and each run's
output items (one item: the prompt sent, the answer, and each criterion's verdict)."""

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.core.timeutil import UTCDateTime, utcnow


class EvalRunStatus(StrEnum):
    """OpenAI's run statuses."""

    queued = "queued"
    in_progress = "in_progress"
    completed = "completed"
    canceled = "canceled"
    failed = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (EvalRunStatus.completed, EvalRunStatus.canceled, EvalRunStatus.failed)


RUN_UNDER_WAY = (EvalRunStatus.queued, EvalRunStatus.in_progress)


class Eval(SQLModel, table=True):
    """What an item looks like (``data_source_config``) and how an answer is graded."""

    __tablename__ = "evals"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(default="", max_length=256)
    data_source_config: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    testing_criteria: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    meta: dict[str, str] | None = Field(default=None, sa_type=sa.JSON, description="the API's metadata")
    owner: str | None = Field(default=None, max_length=64)
    owner_id: int | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class EvalRun(SQLModel, table=True):
    """One model answering an eval's items, graded as the answers come (by a short-lane worker).
    The counts are kept up to date with each graded item, so lists never re-read the items."""

    __tablename__ = "eval_runs"

    id: str = Field(primary_key=True, max_length=64)
    eval_id: str = Field(max_length=64, foreign_key="evals.id", ondelete="CASCADE", index=True)
    name: str = Field(default="", max_length=256)
    model: str = Field(default="", max_length=300)
    data_source: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    status: EvalRunStatus = Field(
        default=EvalRunStatus.queued,
        sa_type=sa.Enum(EvalRunStatus, native_enum=False, length=16, create_constraint=False),
    )
    error: dict[str, str] | None = Field(default=None, sa_type=sa.JSON)
    meta: dict[str, str] | None = Field(default=None, sa_type=sa.JSON, description="the API's metadata")
    total: int = Field(default=0, description="Items to answer")
    passed: int = 0
    failed: int = 0
    errored: int = 0
    per_criterion: dict[str, dict[str, int]] = Field(
        default_factory=dict, sa_type=sa.JSON, description="criterion id → passed / failed counts"
    )
    usage: dict[str, dict[str, int]] = Field(
        default_factory=dict, sa_type=sa.JSON, description="model → invocations and tokens"
    )
    cancel_requested: bool = False
    private: bool = Field(
        default=False, description="its items came from private data: owner and admins only"
    )
    owner: str | None = Field(default=None, max_length=64)
    owner_id: int | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    heartbeat_at: datetime | None = Field(
        default=None,
        sa_type=UTCDateTime,
        description="its worker's last graded item (or when it was sent again)",
    )


class EvalOutputItem(SQLModel, table=True):
    """One item of a run: what was asked, what the model answered, and each criterion's result."""

    __tablename__ = "eval_output_items"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "datasource_item_id", name="uq_eval_output_items_run_item"),
    )

    id: str = Field(primary_key=True, max_length=64)
    run_id: str = Field(max_length=64, foreign_key="eval_runs.id", ondelete="CASCADE", index=True)
    eval_id: str = Field(max_length=64)
    datasource_item_id: int
    datasource_item: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    sample: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    results: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    status: str = Field(default="fail", max_length=8, description="pass, fail or error")
    score: float | None = Field(default=None, description="the mean of its criteria's scores (for sorting)")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
