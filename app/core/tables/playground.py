"""The playground's records: blind-comparison votes, and batch comparisons with their outputs."""

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.core.timeutil import UTCDateTime, utcnow

PROMPT_CHARS = 2000  # a vote keeps this much of its prompt


class Vote(SQLModel, table=True):
    """One blind A/B verdict between two served models."""

    __tablename__ = "votes"

    id: str = Field(primary_key=True, max_length=64)
    model_a: str = Field(max_length=300)
    model_b: str = Field(max_length=300)
    winner: str = Field(max_length=8, description="a, b or tie")
    prompt: str = Field(default="", max_length=PROMPT_CHARS, description="The prompt, cut to 2000 characters")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    judge: str | None = Field(default=None, max_length=300, description="the judge model (None: a person)")
    batch_id: str | None = Field(
        default=None, max_length=64, index=True, description="the batch a judge read"
    )


class BatchStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (BatchStatus.succeeded, BatchStatus.failed)


class BatchRun(SQLModel, table=True):
    """Prompts × models answered one at a time by the model server, by a short-lane worker."""

    __tablename__ = "batch_runs"

    id: str = Field(primary_key=True, max_length=64)
    models: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    status: BatchStatus = Field(
        default=BatchStatus.queued,
        sa_type=sa.Enum(BatchStatus, native_enum=False, length=16, create_constraint=False),
    )
    progress: int = Field(default=0, description="Cells (prompt × model) answered")
    total: int = Field(default=0, description="Cells to answer")
    max_tokens: int = 256
    temperature: float = 0.0
    source_job: str | None = Field(default=None, max_length=64)
    owner_id: int | None = Field(default=None, description="who made it: only they and admins read it")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    error: str | None = Field(default=None, max_length=2000)
    heartbeat_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime, description="its worker's last answer (or when it was sent again)"
    )
    judge: str | None = Field(
        default=None, max_length=300, description="the model judging its answers pairwise"
    )
    judge_status: str | None = Field(
        default=None, max_length=16, description="queued, running, succeeded, failed"
    )
    judge_error: str | None = Field(default=None, max_length=2000)


class BatchOutput(SQLModel, table=True):
    """One cell of a batch: a model's answer to one prompt (``output`` is None until answered)."""

    __tablename__ = "batch_outputs"

    batch_id: str = Field(max_length=64, foreign_key="batch_runs.id", ondelete="CASCADE", primary_key=True)
    prompt_index: int = Field(primary_key=True)
    model: str = Field(max_length=300, primary_key=True)
    prompt: str = Field(sa_type=sa.Text)
    output: str | None = Field(default=None, sa_type=sa.Text)
    latency_s: float | None = None
