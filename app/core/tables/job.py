"""Fine-tuning jobs and what they produce: events, metric points, checkpoints."""

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.core.timeutil import UTCDateTime, utcnow


class JobStatus(StrEnum):
    """Job states, named as in the OpenAI fine-tuning API."""

    validating_files = "validating_files"
    queued = "queued"
    running = "running"
    retrying = "retrying"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in FINISHED


# The status groups, spelled once: a job waiting for a worker, an attempt under way, an ending.
WAITING = (JobStatus.queued, JobStatus.retrying)
ACTIVE = (JobStatus.validating_files, JobStatus.running)
FINISHED = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class Job(SQLModel, table=True):
    """A LoRA fine-tuning job. The database, not the queue, owns its state."""

    __tablename__ = "jobs"

    id: str = Field(primary_key=True, max_length=64)
    model: str = Field(max_length=128, index=True, description="Base model id")
    training_file: str = Field(max_length=64, index=True)
    validation_file: str | None = Field(default=None, max_length=64)
    suffix: str | None = Field(default=None, max_length=64)
    seed: int = 42
    hyperparameters: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    status: JobStatus = Field(
        default=JobStatus.queued,
        index=True,
        sa_type=sa.Enum(JobStatus, native_enum=False, length=32, create_constraint=False),
    )
    error: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    cancel_requested: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    heartbeat_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempt: int = Field(default=0, description="Attempts so far; also the running attempt's fencing token")
    max_attempts: int = 3
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    dispatched_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime, description="when the latest queue message was sent"
    )
    worker: str | None = Field(default=None, max_length=255)
    step: int = 0
    total_steps: int | None = None
    epoch: float | None = None
    trained_tokens: int | None = Field(default=None, sa_type=sa.BigInteger)
    train_loss: float | None = None
    valid_loss: float | None = None
    fine_tuned_model: str | None = Field(default=None, max_length=255)
    adapter_key: str | None = Field(default=None, max_length=512, description="Artifact-store folder")
    advice: list[dict[str, Any]] | None = Field(
        default=None, sa_type=sa.JSON, description="The advisor's warnings at submission"
    )
    owner: str | None = Field(
        default=None, max_length=64, description="username of owner_id (usernames never change)"
    )
    owner_id: int | None = Field(default=None, index=True, description="the user who launched it")
    private: bool = Field(default=False, description="only its owner and admins see it")
    priority: int = Field(default=5, description="0-9; workers take higher first, then older first")
    memory_estimate_bytes: int | None = Field(
        default=None, sa_type=sa.BigInteger, description="the advisor's peak memory per device"
    )
    attempt_started_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime, description="when the current attempt was claimed"
    )
    attempt_gpus: int = Field(default=0, description="GPUs the current attempt holds (0 on a CPU worker)")
    gpu_seconds: float = Field(default=0.0, description="finished attempts' time x GPUs they held")
    device_seconds: float = Field(default=0.0, description="the same for any device, CPUs included")
    evals: list[str] = Field(
        default_factory=list,
        sa_type=sa.JSON,
        description="eval ids run on each checkpoint and the adapter as they are saved (tunedeck's)",
    )


class JobEvent(SQLModel, table=True):
    """A line of a job's event log (OpenAI's fine_tuning.job.event)."""

    __tablename__ = "job_events"
    __table_args__ = (sa.Index("ix_job_events_job_id_id", "job_id", "id"),)

    id: int | None = Field(
        default=None, primary_key=True, sa_type=sa.BigInteger().with_variant(sa.Integer, "sqlite")
    )
    job_id: str = Field(max_length=64, foreign_key="jobs.id", ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    level: str = Field(default="info", max_length=16)
    type: str = Field(default="message", max_length=16, description="message or metrics")
    message: str = Field(max_length=2000)
    data: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)


class Metric(SQLModel, table=True):
    """One metric value at one step: an append-only series per (job, key), like mlflow's."""

    __tablename__ = "metrics"
    # Postgres reads a job's points from these indexes alone (SQLite has the id in every index):
    # pages and the live stream in id order, chart series by key and step (migration 0013).
    __table_args__ = (
        sa.Index(
            "ix_metrics_job_id_id", "job_id", "id", postgresql_include=["key", "step", "epoch", "value"]
        ),
        sa.Index(
            "ix_metrics_job_id_key_step", "job_id", "key", "step", "value", "epoch", postgresql_include=["id"]
        ),
    )

    id: int | None = Field(
        default=None, primary_key=True, sa_type=sa.BigInteger().with_variant(sa.Integer, "sqlite")
    )
    job_id: str = Field(max_length=64, foreign_key="jobs.id", ondelete="CASCADE")
    key: str = Field(max_length=64)
    step: int
    epoch: float | None = None
    value: float
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Checkpoint(SQLModel, table=True):
    """An adapter saved during training (OpenAI's fine_tuning.job.checkpoint)."""

    __tablename__ = "checkpoints"

    id: str = Field(primary_key=True, max_length=64)
    job_id: str = Field(max_length=64, foreign_key="jobs.id", ondelete="CASCADE", index=True)
    step: int
    epoch: float | None = None
    train_loss: float | None = None
    valid_loss: float | None = None
    artifact_key: str = Field(max_length=512)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MergeStatus(StrEnum):
    """A merge's states; ``cancelling`` waits for the worker to stop at its next stage."""

    queued = "queued"
    running = "running"
    cancelling = "cancelling"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


# a merge in these has its task still to finish
MERGE_UNDER_WAY = (MergeStatus.queued, MergeStatus.running, MergeStatus.cancelling)


class Merge(SQLModel, table=True):
    """Merging a job's adapter into its full-precision base, as a worker task with progress."""

    __tablename__ = "merges"

    id: str = Field(primary_key=True, max_length=64)
    job_id: str = Field(max_length=64, foreign_key="jobs.id", ondelete="CASCADE", index=True)
    status: MergeStatus = Field(
        default=MergeStatus.queued,
        sa_type=sa.Enum(MergeStatus, native_enum=False, length=16, create_constraint=False),
    )
    progress: float = 0.0
    message: str = Field(default="", max_length=500)
    error: str | None = Field(default=None, max_length=2000)
    artifact_key: str | None = Field(default=None, max_length=512)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
