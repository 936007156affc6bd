"""Jobs: create, list, cancel; their events, metric points, checkpoints and progress."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlmodel import Session, col, delete, func, or_, select

from app.basemodels.inspect import UnreadableModel, inspect_model
from app.basemodels.service import get_model
from app.core.config import get_settings
from app.core.db import after_commit
from app.core.errors import Conflict, InvalidRequest, NotFound, Unprocessable
from app.core.events import add_event
from app.core.ids import new_id
from app.core.outbox import emit_finished
from app.core.queue import dispatch_training_task
from app.core.spec import TrainingSpec
from app.core.storage import ArtifactStore
from app.core.tables import (
    MERGE_UNDER_WAY,
    WAITING,
    BaseModelRecord,
    Checkpoint,
    DatasetFile,
    Job,
    JobEvent,
    JobStatus,
    Merge,
    MergeStatus,
    Metric,
)
from app.core.timeutil import utcnow
from app.core.visibility import visible_clause
from app.datasets.service import get_dataset, token_stats
from app.evals.service import check_job_evals
from app.jobs.advisor import Check, Estimates, check_against_model, check_task, estimate, pitfalls
from app.jobs.capacity import gpu_check, memory_check


class JobConflict(Conflict):
    """The job is not in a state that allows this (e.g. cancelling a finished job)."""


class AdviceBlocked(Unprocessable):
    """The advisor found errors: the job cannot run as specified."""

    def __init__(self, checks: list[Check]) -> None:
        self.checks = checks
        super().__init__(
            "; ".join(check.message for check in checks), param=checks[0].field, code=checks[0].code
        )

    def details(self) -> dict[str, Any]:
        return {"details": [{"field": c.field, "code": c.code, "message": c.message} for c in self.checks]}


class InvalidJobRequest(InvalidRequest):
    """A job request names something unusable; ``param`` says which field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message, param=param, code=f"invalid_{param}")


def create_job(
    *,
    session: Session,
    store: ArtifactStore,
    model: str,
    training_file: str,
    spec: TrainingSpec,
    validation_file: str | None = None,
    suffix: str | None = None,
    seed: int | None = None,
    owner: tuple[int, str] | None = None,
    private: bool = False,
    priority: int = 5,
    evals: list[str] | None = None,
) -> Job:
    """Check the request, store the job as queued and enqueue it once committed.
    ``owner`` is (user id, username) of who launches it; ``evals`` run on each checkpoint."""
    checks, estimates = advise_job(
        session=session,
        store=store,
        model=model,
        training_file=training_file,
        validation_file=validation_file,
        spec=spec,
    )
    errors = [check for check in checks if check.level == "error"]
    if errors:
        raise AdviceBlocked(errors)
    eval_ids = check_job_evals(
        session=session,
        store=store,
        eval_ids=evals or [],
        training_file=training_file,
        validation_file=validation_file,
        viewer_id=owner[0] if owner else None,
    )
    on_private_data = private_files(session=session, ids=[training_file, validation_file])
    job = Job(
        id=new_id("ftjob"),
        model=model,
        training_file=training_file,
        validation_file=validation_file,
        suffix=suffix,
        seed=42 if seed is None else seed,
        hyperparameters=spec.model_dump(mode="json"),
        status=JobStatus.queued,
        advice=[check.__dict__ for check in checks],
        max_attempts=get_settings().max_attempts,
        dispatched_at=utcnow(),
        owner_id=owner[0] if owner else None,
        owner=owner[1] if owner else None,
        private=private or bool(on_private_data),
        priority=priority,
        memory_estimate_bytes=estimates.memory_bytes.get(
            "total_checkpointed", estimates.memory_bytes.get("total")
        ),
        evals=eval_ids,
    )
    session.add(job)
    session.flush()
    add_event(session=session, job_id=job.id, message=f"Created fine-tuning job {job.id} on {model}")
    if on_private_data and not private:
        add_event(
            session=session,
            job_id=job.id,
            message=f"The job is private: it trains on the private file(s) {', '.join(on_private_data)}",
        )
    for check in checks:
        add_event(session=session, job_id=job.id, message=f"Advisor: {check.message}", level=check.level)
    after_commit(session, lambda: dispatch_training_task(job.id, memory_bytes=job.memory_estimate_bytes))
    return job


def private_files(*, session: Session, ids: list[str | None]) -> list[str]:
    """Which of ``ids`` are private files. A job on one is private too: whoever may see the job
    sees its data (its validation rows feed batch compares and evaluations, its page names the file)."""
    wanted = [i for i in ids if i]
    if not wanted:
        return []
    query = select(DatasetFile.id).where(col(DatasetFile.id).in_(wanted), col(DatasetFile.private).is_(True))
    return sorted(session.exec(query).all())


def _lookup(
    session: Session, model: str, training_file: str, validation_file: str | None
) -> tuple[BaseModelRecord, DatasetFile, DatasetFile | None]:
    try:
        base = get_model(session=session, model_id=model)
    except NotFound as exc:
        raise InvalidJobRequest(str(exc), "model") from None
    files: list[DatasetFile | None] = []
    for param, file_id in (("training_file", training_file), ("validation_file", validation_file)):
        try:
            files.append(get_dataset(session=session, dataset_id=file_id) if file_id else None)
        except NotFound as exc:
            raise InvalidJobRequest(str(exc), param) from None
        if files[-1] is not None and files[-1].purpose != "fine-tune":
            raise InvalidJobRequest(
                f"file {file_id} holds eval items (purpose {files[-1].purpose!r}); train on a file uploaded "
                "with purpose 'fine-tune'",
                param,
            )
    train = files[0]
    assert train is not None
    return base, train, files[1]


def advise_job(
    *,
    session: Session,
    store: ArtifactStore,
    model: str,
    training_file: str,
    spec: TrainingSpec,
    validation_file: str | None = None,
) -> tuple[list[Check], Estimates]:
    """The advisor's checks (errors block) and the estimates for a job before it runs."""
    base, train, validation = _lookup(session, model, training_file, validation_file)
    try:
        info = inspect_model(base.path)
    except (UnreadableModel, OSError) as exc:
        raise InvalidJobRequest(f"base model {model!r} cannot be read: {exc}", "model") from None
    checks = check_against_model(spec, info, model)
    formats = {"training_file": train.format} | ({"validation_file": validation.format} if validation else {})
    checks += check_task(spec, info, model_id=model, formats=formats)
    stats = token_stats(store=store, dataset=train, base_model=base, max_seq_length=spec.max_seq_length)
    train_rows = train.rows if validation else train.train_rows
    has_validation = validation is not None or train.validation_rows > 0
    checks += pitfalls(spec, info=info, stats=stats, train_rows=train_rows, has_validation=has_validation)
    speed = measured_tokens_per_second(session=session, model=model)
    estimates = estimate(spec, info, stats=stats, train_rows=train_rows, tokens_per_second=speed)
    placement = [
        memory_check(session=session, spec=spec, budget=estimates.memory_bytes),
        gpu_check(session=session, spec=spec),
    ]
    return checks + [check for check in placement if check], estimates


def measured_tokens_per_second(*, session: Session, model: str) -> float | None:
    """Training speed of the latest finished jobs on ``model`` (tokens per second), if any."""
    query = (
        select(Job)
        .where(Job.model == model, Job.status == JobStatus.succeeded, col(Job.trained_tokens).is_not(None))
        .order_by(col(Job.finished_at).desc())
        .limit(5)
    )
    rates = [
        job.trained_tokens / seconds
        for job in session.exec(query).all()
        if job.trained_tokens
        and job.started_at
        and job.finished_at
        and (seconds := (job.finished_at - job.started_at).total_seconds()) > 0
    ]
    return sum(rates) / len(rates) if rates else None


def get_job(*, session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no fine-tuning job with id {job_id!r}")
    return job


def list_jobs(
    *,
    session: Session,
    after: str | None = None,
    limit: int = 20,
    filters: "JobFilter | None" = None,
) -> tuple[list[Job], bool]:
    """Newest first, cursor-paginated: jobs created before job ``after``; and whether more exist."""
    query = select(Job).where(*(filters or JobFilter()).where())
    if after is not None:
        cursor = get_job(session=session, job_id=after)
        query = query.where(
            (col(Job.created_at) < cursor.created_at)
            | ((col(Job.created_at) == cursor.created_at) & (col(Job.id) < cursor.id))
        )
    query = query.order_by(col(Job.created_at).desc(), col(Job.id).desc()).limit(limit + 1)
    jobs = list(session.exec(query).all())
    return jobs[:limit], len(jobs) > limit


@dataclass(frozen=True)
class JobFilter:
    """What the jobs page filters by; empty fields match everything."""

    status: JobStatus | None = None
    model: str | None = None
    dataset: str | None = None  # training or validation file id
    search: str | None = None  # in the id, suffix or fine-tuned model name
    owner: str | None = None  # username
    viewer_id: int | None = None  # leave out other users' private jobs (None: see all, as admins do)

    def where(self) -> list[Any]:
        clauses: list[Any] = [visible_clause(Job, self.viewer_id)]
        if self.owner:
            clauses.append(col(Job.owner) == self.owner)
        if self.status is not None:
            clauses.append(col(Job.status) == self.status)
        if self.model:
            clauses.append(col(Job.model) == self.model)
        if self.dataset:
            clauses.append(
                or_(col(Job.training_file) == self.dataset, col(Job.validation_file) == self.dataset)
            )
        if self.search:
            pattern = (
                "%" + self.search.strip().lower().replace("\\", "").replace("%", "").replace("_", "\\_") + "%"
            )
            clauses.append(
                or_(
                    func.lower(col(Job.id)).like(pattern, escape="\\"),
                    func.lower(func.coalesce(col(Job.suffix), "")).like(pattern, escape="\\"),
                    func.lower(func.coalesce(col(Job.fine_tuned_model), "")).like(pattern, escape="\\"),
                )
            )
        return clauses


def page_of_jobs(
    *, session: Session, filters: JobFilter, page: int, per_page: int = 25
) -> tuple[list[Job], int]:
    """One page of jobs (newest first) matching ``filters``, and how many match in all."""
    clauses = filters.where()
    total = session.exec(select(func.count()).select_from(Job).where(*clauses)).one()
    query = (
        select(Job)
        .where(*clauses)
        .order_by(col(Job.created_at).desc(), col(Job.id).desc())
        .offset(max(0, page - 1) * per_page)
        .limit(per_page)
    )
    return list(session.exec(query).all()), int(total)


def queue(*, session: Session) -> list[Job]:
    """Jobs waiting for a worker, in the order workers take them (highest priority, then oldest
    first): position = index + 1."""
    waiting = (JobStatus.queued, JobStatus.retrying)
    order = (col(Job.priority).desc(), col(Job.created_at), col(Job.id))
    query = select(Job).where(col(Job.status).in_(waiting)).order_by(*order)
    return list(session.exec(query).all())


def active_jobs(*, session: Session) -> list[Job]:
    query = select(Job).where(col(Job.status).in_((JobStatus.validating_files, JobStatus.running)))
    return list(session.exec(query.order_by(col(Job.started_at))).all())


def recent_results(*, session: Session, limit: int = 10) -> list[Job]:
    finished = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)
    query = (
        select(Job).where(col(Job.status).in_(finished)).order_by(col(Job.finished_at).desc()).limit(limit)
    )
    return list(session.exec(query).all())


def final_metrics(*, session: Session, job: Job) -> dict[str, Any]:
    """What the compare page puts side by side."""
    best = session.exec(
        select(func.min(Metric.value)).where(Metric.job_id == job.id, Metric.key == "valid_loss")
    ).one()
    duration = (
        (job.finished_at - job.started_at).total_seconds() if job.finished_at and job.started_at else None
    )
    return {
        "status": job.status.value,
        "steps": job.step,
        "epoch": job.epoch,
        "train_loss": job.train_loss,
        "valid_loss": job.valid_loss,
        "best_valid_loss": best,
        "trained_tokens": job.trained_tokens,
        "duration_s": duration,
    }


def delete_job(*, session: Session, store: ArtifactStore, job_id: str) -> None:
    """Delete a finished job with its metrics, events, checkpoints, merges and files."""
    job = get_job(session=session, job_id=job_id)
    if not job.status.is_terminal:
        raise JobConflict(f"job {job_id} is {job.status.value}; cancel it before deleting it")
    merging = select(Merge.id).where(Merge.job_id == job_id, col(Merge.status).in_(MERGE_UNDER_WAY))
    if session.exec(merging).first() is not None:
        raise JobConflict(
            f"job {job_id} is being merged; cancel the merge (POST …/jobs/{job_id}/merge/cancel, or Cancel"
            " merge on the job page) and delete the job once it has stopped"
        )
    for table in (Metric, JobEvent, Checkpoint, Merge):
        session.exec(delete(table).where(col(table.job_id) == job_id))
    session.delete(job)
    after_commit(session, lambda: store.delete(f"jobs/{job_id}"))


def use_checkpoint(*, session: Session, job: Job, checkpoint_id: str | None, by: str | None = None) -> Job:
    """Make one of a finished job's checkpoints its adapter (what ``<base>:<job>`` serves, what
    downloads and merges use), or with None the adapter it trained to the end again."""
    if job.status != JobStatus.succeeded:
        raise JobConflict(f"job {job.id} is {job.status.value}; only a succeeded job's adapter can be chosen")
    latest = session.exec(
        select(Merge).where(Merge.job_id == job.id).order_by(col(Merge.created_at).desc())
    ).first()
    if latest is not None and latest.status in MERGE_UNDER_WAY:
        raise JobConflict(f"job {job.id} is being merged; wait for the merge or cancel it first")
    final = f"jobs/{job.id}/adapter"
    if checkpoint_id is None:
        job.adapter_key, message = final, "The job's adapter is the one it trained to the end again"
    else:
        checkpoint = get_checkpoint(session=session, job_id=job.id, checkpoint_id=checkpoint_id)
        job.adapter_key = checkpoint.artifact_key
        message = f"The job's adapter is now its checkpoint at step {checkpoint.step}"
    if by:
        message += f" (chosen by {by})"
    if latest is not None and latest.status == MergeStatus.succeeded:
        message += "; merge again for a merged model of it"
    session.add(job)
    add_event(session=session, job_id=job.id, message=message)
    return job


def resume_job(*, session: Session, store: ArtifactStore, job_id: str, checkpoint_id: str) -> Job:
    """Run a failed or cancelled job again from one of its checkpoints (later ones are dropped)."""
    job = get_job(session=session, job_id=job_id)
    if job.status not in (JobStatus.failed, JobStatus.cancelled):
        raise JobConflict(f"job {job_id} is {job.status.value}; only failed or cancelled jobs can be resumed")
    checkpoint = get_checkpoint(session=session, job_id=job_id, checkpoint_id=checkpoint_id)
    later = list(
        session.exec(
            select(Checkpoint).where(Checkpoint.job_id == job_id, col(Checkpoint.step) > checkpoint.step)
        )
    )
    for newer in later:
        session.delete(newer)
    job.status = JobStatus.queued
    job.error = None
    job.finished_at = None
    job.cancel_requested = False
    job.next_attempt_at = None
    job.dispatched_at = utcnow()
    job.attempt = max(job.attempt, 1)  # the next claim is attempt 2+: it resumes from the newest checkpoint
    job.max_attempts = job.attempt + get_settings().max_attempts
    session.add(job)
    add_event(
        session=session,
        job_id=job_id,
        message=f"Resume from the checkpoint at step {checkpoint.step} requested"
        + (f"; {len(later)} later checkpoint(s) dropped" if later else ""),
    )
    for key in [c.artifact_key for c in later]:
        after_commit(session, partial(store.delete, key))
    after_commit(session, lambda: dispatch_training_task(job_id, memory_bytes=job.memory_estimate_bytes))
    return job


def set_priority(*, session: Session, job_id: str, priority: int) -> Job:
    """Move a waiting job up or down the queue (workers take the highest priority first)."""
    job = get_job(session=session, job_id=job_id)
    if job.status not in WAITING:
        raise JobConflict(
            f"job {job_id} is {job.status.value}; its priority can only change while it waits for a worker"
        )
    if priority != job.priority:
        add_event(
            session=session, job_id=job.id, message=f"Priority changed from {job.priority} to {priority}"
        )
        job.priority = priority
        session.add(job)
        session.flush()
    return job


def cancel_job(*, session: Session, job_id: str) -> Job:
    """Cancel now if queued; otherwise flag it so the worker stops at its next step."""
    job = get_job(session=session, job_id=job_id)
    if job.status.is_terminal:
        raise JobConflict(f"job {job_id} has already {job.status.value}; nothing to cancel")
    if job.status in (JobStatus.queued, JobStatus.retrying):
        job.status, job.finished_at = JobStatus.cancelled, utcnow()
        add_event(session=session, job_id=job.id, message="Job cancelled while it waited for a worker")
        emit_finished(session, job)
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


def list_alerts(*, session: Session, job_id: str) -> list[JobEvent]:
    """The job's training-health alerts (overfitting, underfitting, divergence), oldest first."""
    query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.type == "alert")
    return list(session.exec(query.order_by(col(JobEvent.id))).all())


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
