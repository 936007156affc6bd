"""Request and response shapes of the fine-tuning API (after OpenAI's), plus tunedeck's extras."""

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from app.core.spec import TrainingSpec
from app.core.tables import Checkpoint, Job, JobEvent, Merge, MergeStatus
from app.core.usage import job_usage
from app.jobs.advisor import Check, Estimates
from app.jobs.service import progress

OPENAI_AUTO = "auto"
DEFAULT_LEARNING_RATE = TrainingSpec.model_fields["learning_rate"].default


def _spec_from_openai(raw: dict[str, Any]) -> dict[str, Any]:
    """Accept OpenAI's hyperparameter spellings: "auto" values and learning_rate_multiplier."""
    values = {k: v for k, v in raw.items() if v != OPENAI_AUTO}
    multiplier = values.pop("learning_rate_multiplier", None)
    if multiplier is not None and "learning_rate" not in values:
        values["learning_rate"] = DEFAULT_LEARNING_RATE * float(multiplier)
    return values


class JobCreate(BaseModel):
    """POST /api/v1/fine_tuning/jobs."""

    model: str = Field(description="Base model id, see GET /api/v1/models")
    training_file: str = Field(description="A file id from POST /api/v1/files")
    validation_file: str | None = Field(
        None, description="Separate validation file; default: the training file's split"
    )
    suffix: str | None = Field(
        None, max_length=64, pattern=r"^[A-Za-z0-9_.-]*$", description="A label for the result"
    )
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Training seed (default 42)")
    hyperparameters: TrainingSpec = Field(default_factory=TrainingSpec)
    private: bool = Field(False, description="only you and admins see the job (default: the whole team)")
    priority: int = Field(
        5, ge=0, le=9, description="workers take higher first, then older first; members 0-5, admins up to 9"
    )
    evals: list[str] = Field(
        default_factory=list,
        description="tunedeck's: eval ids to run on each checkpoint and on the adapter as they are "
        "saved, over the job's validation rows, on the short lane while training goes on",
    )

    @model_validator(mode="before")
    @classmethod
    def _openai_shapes(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        method = data.pop("method", None)
        if isinstance(method, dict) and isinstance(method.get("supervised"), dict):
            data.setdefault("hyperparameters", method["supervised"].get("hyperparameters") or {})
        for ignored in ("integrations", "metadata"):
            data.pop(ignored, None)
        if isinstance(data.get("hyperparameters"), dict):
            data["hyperparameters"] = _spec_from_openai(data["hyperparameters"])
        return data


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class JobProgress(BaseModel):
    step: int
    total_steps: int | None
    fraction: float
    eta: int | None


class JobPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    finished_at: int | None
    model: str
    fine_tuned_model: str | None
    organization_id: str = "tunedeck"
    status: str
    hyperparameters: dict[str, Any]
    method: dict[str, Any]
    training_file: str
    validation_file: str | None
    result_files: list[str] = []
    trained_tokens: int | None
    error: JobError | None
    seed: int
    suffix: str | None
    estimated_finish: int | None
    integrations: list[Any] = []
    metadata: dict[str, str] | None = None
    progress: JobProgress
    epoch: float | None
    train_loss: float | None
    valid_loss: float | None
    cancel_requested: bool
    attempt: int
    max_attempts: int
    adapter_url: str | None
    advice: list[dict[str, Any]]
    owner: str | None = Field(None, description="username of who launched it")
    private: bool = False
    priority: int = 5
    memory_estimate_bytes: int | None = Field(None, description="the advisor's peak memory per device")
    worker: str | None = Field(None, description="the worker running (or that last ran) it")
    gpu_hours: float = Field(0.0, description="time × GPUs over its attempts (0 on CPU workers)")
    device_hours: float = Field(0.0, description="time × devices over its attempts, CPUs included")
    waiting_reason: str | None = Field(
        None, description="why a waiting job is held back, if not just busy workers"
    )
    evals: list[str] = Field(
        default_factory=list, description="tunedeck's: evals run on each checkpoint as it is saved"
    )

    @classmethod
    def of(cls, job: Job, waiting_reason: str | None = None) -> "JobPublic":
        p = progress(job)
        used = job_usage(job)
        eta = int(p.eta.timestamp()) if p.eta else None
        return cls(
            id=job.id,
            created_at=int(job.created_at.timestamp()),
            finished_at=int(job.finished_at.timestamp()) if job.finished_at else None,
            model=job.model,
            fine_tuned_model=job.fine_tuned_model,
            status=job.status.value,
            hyperparameters=job.hyperparameters,
            method={"type": "supervised", "supervised": {"hyperparameters": job.hyperparameters}},
            training_file=job.training_file,
            validation_file=job.validation_file,
            result_files=[],
            trained_tokens=job.trained_tokens,
            error=JobError(**job.error) if job.error else None,
            seed=job.seed,
            suffix=job.suffix,
            estimated_finish=eta,
            progress=JobProgress(step=p.step, total_steps=p.total_steps, fraction=p.fraction, eta=eta),
            epoch=job.epoch,
            train_loss=job.train_loss,
            valid_loss=job.valid_loss,
            cancel_requested=job.cancel_requested,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            adapter_url=f"/api/v1/fine_tuning/jobs/{job.id}/adapter" if job.adapter_key else None,
            advice=job.advice or [],
            owner=job.owner,
            private=job.private,
            priority=job.priority,
            memory_estimate_bytes=job.memory_estimate_bytes,
            worker=job.worker,
            gpu_hours=used.gpu_hours,
            device_hours=used.device_hours,
            waiting_reason=waiting_reason,
            evals=list(job.evals or []),
        )


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobPublic]
    has_more: bool


class EventPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: str
    message: str
    type: str
    data: dict[str, Any] | None

    @classmethod
    def of(cls, event: JobEvent) -> "EventPublic":
        return cls(
            id=f"ftevent-{event.id}",
            created_at=int(event.created_at.timestamp()),
            level=event.level,
            message=event.message,
            type=event.type,
            data=event.data,
        )


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EventPublic]
    has_more: bool


class CheckpointPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: dict[str, float | None]
    download_url: str

    @classmethod
    def of(cls, checkpoint: Checkpoint, job: Job) -> "CheckpointPublic":
        return cls(
            id=checkpoint.id,
            created_at=int(checkpoint.created_at.timestamp()),
            fine_tuned_model_checkpoint=f"{job.model}:{job.id}:ckpt-{checkpoint.step}",
            fine_tuning_job_id=job.id,
            step_number=checkpoint.step,
            metrics={
                "step": float(checkpoint.step),
                "train_loss": checkpoint.train_loss,
                "valid_loss": checkpoint.valid_loss,
            },
            download_url=f"/api/v1/fine_tuning/jobs/{job.id}/checkpoints/{checkpoint.id}/download",
        )


class CheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CheckpointPublic]
    has_more: bool = False


class MetricPoint(BaseModel):
    id: int
    key: str
    step: int
    epoch: float | None
    value: float


class MetricList(BaseModel):
    object: Literal["list"] = "list"
    data: list[MetricPoint]
    last_id: int


class SeriesPublic(BaseModel):
    steps: list[int]
    epochs: list[float | None]
    values: list[float]
    total: int = Field(description="points stored; more than shown when downsampled")
    downsampled: bool


class SeriesList(BaseModel):
    object: Literal["metric_series"] = "metric_series"
    last_id: int = Field(
        description="stream from here (cursor '<last_id>-<event id>') to get only newer points"
    )
    series: dict[str, SeriesPublic]


class CheckPublic(BaseModel):
    level: Literal["error", "warning", "info"]
    code: str
    message: str
    field: str | None


class EstimatesPublic(BaseModel):
    trainable_params: int
    total_params: int
    trainable_percent: float
    memory_bytes: dict[str, int]
    steps: int | None
    tokens: int | None
    seconds: float | None
    seconds_basis: str


class AdvicePublic(BaseModel):
    object: Literal["fine_tuning.advice"] = "fine_tuning.advice"
    checks: list[CheckPublic]
    estimates: EstimatesPublic
    blocked: bool

    @classmethod
    def of(cls, checks: list[Check], estimates: Estimates) -> "AdvicePublic":
        return cls(
            checks=[CheckPublic(**check.__dict__) for check in checks],
            estimates=EstimatesPublic(**estimates.__dict__),
            blocked=any(check.level == "error" for check in checks),
        )


class MergePublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job.merge"] = "fine_tuning.job.merge"
    fine_tuning_job_id: str
    status: str
    progress: float
    message: str
    error: str | None
    created_at: int
    finished_at: int | None
    download_url: str | None

    @classmethod
    def of(cls, merge: Merge) -> "MergePublic":
        url = (
            f"/api/v1/fine_tuning/jobs/{merge.job_id}/merged"
            if merge.status == MergeStatus.succeeded
            else None
        )
        return cls(
            id=merge.id,
            fine_tuning_job_id=merge.job_id,
            status=merge.status,
            progress=merge.progress,
            message=merge.message,
            error=merge.error,
            created_at=int(merge.created_at.timestamp()),
            finished_at=int(merge.finished_at.timestamp()) if merge.finished_at else None,
            download_url=url,
        )
