"""Jobs: create, list, cancel; their events, metric points, checkpoints and progress."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from app.basemodels.service import get_model
from app.datasets.service import NotFound, get_dataset
from app.db import after_commit
from app.ids import new_id
from app.models import Checkpoint, Job, JobEvent, JobStatus, Metric
from app.queue import send_training_task
from app.spec import TrainingSpec
from app.timeutil import utcnow


class JobConflict(ValueError):
    """The job is not in a state that allows this (e.g. cancelling a finished job)."""


class InvalidJobRequest(ValueError):
    """A job request names something unusable; ``param`` says which field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def create_job(
    *,
    session: Session,
    model: str,
    training_file: str,
    spec: TrainingSpec,
    validation_file: str | None = None,
    suffix: str | None = None,
    seed: int | None = None,
) -> Job:
    """Check the request, store the job as queued and enqueue it once committed."""
    try:
        get_model(session=session, model_id=model)
    except NotFound as exc:
        raise InvalidJobRequest(str(exc), "model") from None
    for param, file_id in (("training_file", training_file), ("validation_file", validation_file)):
        if file_id is None:
            continue
        try:
            get_dataset(session=session, dataset_id=file_id)
        except NotFound as exc:
            raise InvalidJobRequest(str(exc), param) from None
    job = Job(
        id=new_id("ftjob"),
        model=model,
        training_file=training_file,
        validation_file=validation_file,
        suffix=suffix,
        seed=42 if seed is None else seed,
        hyperparameters=spec.model_dump(mode="json"),
        status=JobStatus.queued,
    )
    session.add(job)
    session.flush()
    add_event(session=session, job_id=job.id, message=f"Created fine-tuning job {job.id} on {model}")
    after_commit(session, lambda: send_training_task(job.id))
    return job


def get_job(*, session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no fine-tuning job with id {job_id!r}")
    return job


def list_jobs(
    *, session: Session, after: str | None = None, limit: int = 20, status: JobStatus | None = None
) -> tuple[list[Job], bool]:
    """Newest first, cursor-paginated: jobs created before job ``after``; and whether more exist."""
    query = select(Job)
    if status is not None:
        query = query.where(Job.status == status)
    if after is not None:
        cursor = get_job(session=session, job_id=after)
        query = query.where(
            (col(Job.created_at) < cursor.created_at)
            | ((col(Job.created_at) == cursor.created_at) & (col(Job.id) < cursor.id))
        )
    query = query.order_by(col(Job.created_at).desc(), col(Job.id).desc()).limit(limit + 1)
    jobs = list(session.exec(query).all())
    return jobs[:limit], len(jobs) > limit


def cancel_job(*, session: Session, job_id: str) -> Job:
    """Cancel now if queued; otherwise flag it so the worker stops at its next step."""
    job = get_job(session=session, job_id=job_id)
    if job.status.is_terminal:
        raise JobConflict(f"job {job_id} has already {job.status.value}; nothing to cancel")
    if job.status == JobStatus.queued:
        job.status, job.finished_at = JobStatus.cancelled, utcnow()
        add_event(session=session, job_id=job.id, message="Job cancelled before it started")
    elif not job.cancel_requested:
        add_event(
            session=session,
            job_id=job.id,
            message="Cancellation requested; stopping at the next step",
        )
    job.cancel_requested = True
    session.add(job)
    session.flush()
    return job


def add_event(
    *,
    session: Session,
    job_id: str,
    message: str,
    level: str = "info",
    data: dict[str, object] | None = None,
) -> JobEvent:
    event = JobEvent(job_id=job_id, message=message[:2000], level=level, data=data)
    session.add(event)
    return event


def list_events(
    *, session: Session, job_id: str, after: int | None = None, limit: int = 20
) -> tuple[list[JobEvent], bool]:
    """Newest first (as OpenAI lists them); ``after`` is an event id cursor."""
    get_job(session=session, job_id=job_id)
    query = select(JobEvent).where(JobEvent.job_id == job_id)
    if after is not None:
        query = query.where(col(JobEvent.id) < after)
    events = list(session.exec(query.order_by(col(JobEvent.id).desc()).limit(limit + 1)).all())
    return events[:limit], len(events) > limit


def events_since(*, session: Session, job_id: str, after_id: int, limit: int = 500) -> list[JobEvent]:
    """Events with id > after_id, oldest first (for live streams)."""
    query = select(JobEvent).where(JobEvent.job_id == job_id, col(JobEvent.id) > after_id)
    return list(session.exec(query.order_by(col(JobEvent.id)).limit(limit)).all())


def metrics_since(*, session: Session, job_id: str, after_id: int, limit: int = 5000) -> list[Metric]:
    """Metric points with id > after_id, in write order (for charts and live streams)."""
    query = select(Metric).where(Metric.job_id == job_id, col(Metric.id) > after_id)
    return list(session.exec(query.order_by(col(Metric.id)).limit(limit)).all())


def list_checkpoints(*, session: Session, job_id: str) -> list[Checkpoint]:
    get_job(session=session, job_id=job_id)
    query = select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(col(Checkpoint.step).desc())
    return list(session.exec(query).all())


def get_checkpoint(*, session: Session, job_id: str, checkpoint_id: str) -> Checkpoint:
    checkpoint = session.get(Checkpoint, checkpoint_id)
    if checkpoint is None or checkpoint.job_id != job_id:
        raise NotFound(f"no checkpoint {checkpoint_id!r} in job {job_id!r}")
    return checkpoint


@dataclass(frozen=True)
class Progress:
    """Where a job is: fraction done and the estimated finish time."""

    step: int
    total_steps: int | None
    fraction: float
    eta: datetime | None


def progress(job: Job) -> Progress:
    """Progress from the worker's step counter; ETA from the pace so far."""
    total = job.total_steps
    if job.status == JobStatus.succeeded:
        return Progress(job.step, total, 1.0, None)
    fraction = min(1.0, job.step / total) if total else 0.0
    eta = None
    if job.status == JobStatus.running and job.started_at and job.step and total:
        elapsed = (utcnow() - job.started_at).total_seconds()
        eta = utcnow() + timedelta(seconds=elapsed / job.step * max(0, total - job.step))
    return Progress(job.step, total, fraction, eta)
