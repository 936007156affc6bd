"""REST: /api/v1/fine_tuning/jobs — the OpenAI-shaped fine-tuning API."""

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from app.auth.access import check_job_files, check_priority, job_for, log_action
from app.auth.deps import CurrentUser, Principal
from app.core.config import get_settings
from app.core.db import read_session
from app.core.storage import ArtifactStore
from app.core.tables import Job, JobStatus, Metric
from app.http.deps import DB_INT_MAX, SessionDep, StoreDep, commit
from app.jobs import merges, service
from app.jobs.capacity import waiting_reasons
from app.jobs.schemas import (
    AdvicePublic,
    CheckpointList,
    CheckpointPublic,
    EventList,
    EventPublic,
    JobCreate,
    JobList,
    JobPublic,
    MergePublic,
    MetricList,
    SeriesList,
    SeriesPublic,
)
from app.jobs.series import job_series
from app.jobs.stream import job_events

router = APIRouter(prefix="/api/v1/fine_tuning/jobs", tags=["fine-tuning"])


def launch_job(
    *, session: Session, store: ArtifactStore, request: Request, user: Principal, body: JobCreate
) -> Job:
    """What creating a job means for the API and the form alike: ``user`` may use the files and
    the priority, the advisor lets it through, and the audit log says who launched it."""
    check_job_files(session, user, body.training_file, body.validation_file)
    check_priority(body.priority, user)
    job = service.create_job(
        session=session,
        store=store,
        model=body.model,
        training_file=body.training_file,
        validation_file=body.validation_file,
        suffix=body.suffix,
        seed=body.seed,
        spec=body.hyperparameters,
        owner=(user.user_id, user.username),
        private=body.private,
        priority=body.priority,
        evals=body.evals,
    )
    log_action(session, request, user, "job_created", "job", job.id, model=job.model, file=job.training_file)
    return job


@router.post("", response_model=JobPublic, summary="Create a LoRA fine-tuning job")
def create_job(
    session: SessionDep, store: StoreDep, request: Request, user: CurrentUser, body: JobCreate
) -> JobPublic:
    job = launch_job(session=session, store=store, request=request, user=user, body=body)
    commit(session)
    return JobPublic.of(job)


@router.post("/advice", response_model=AdvicePublic, summary="The advisor's checks and estimates for a job")
def advise_job(session: SessionDep, store: StoreDep, user: CurrentUser, body: JobCreate) -> AdvicePublic:
    check_job_files(session, user, body.training_file, body.validation_file)
    checks, estimates = service.advise_job(
        session=session,
        store=store,
        model=body.model,
        training_file=body.training_file,
        validation_file=body.validation_file,
        spec=body.hyperparameters,
    )
    return AdvicePublic.of(checks, estimates)


@router.get("", response_model=JobList)
def list_jobs(
    session: SessionDep,
    user: CurrentUser,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    status: JobStatus | None = None,
    model: Annotated[str | None, Query(description="only jobs on this base model")] = None,
    dataset: Annotated[str | None, Query(description="only jobs training or validating on this file")] = None,
    q: Annotated[str | None, Query(max_length=100, description="search id, suffix, model name")] = None,
    owner: Annotated[str | None, Query(max_length=64, description="only jobs this username launched")] = None,
) -> JobList:
    filters = service.JobFilter(
        status=status, model=model, dataset=dataset, search=q, owner=owner, viewer_id=user.viewer_id
    )
    if after is not None:
        job_for(session, after, user)
    jobs, has_more = service.list_jobs(session=session, after=after, limit=limit, filters=filters)
    reasons = waiting_reasons(session=session, jobs=jobs)
    return JobList(data=[JobPublic.of(j, reasons.get(j.id)) for j in jobs], has_more=has_more)


@router.delete("/{job_id}", summary="Delete a finished job with its files, metrics and events")
def delete_job(
    session: SessionDep, store: StoreDep, request: Request, user: CurrentUser, job_id: str
) -> dict[str, object]:
    job_for(session, job_id, user, manage="delete")
    service.delete_job(session=session, store=store, job_id=job_id)
    log_action(session, request, user, "job_deleted", "job", job_id)
    commit(session)
    return {"id": job_id, "object": "fine_tuning.job", "deleted": True}


class ResumeRequest(BaseModel):
    checkpoint: str = Field(description="id of one of the job's checkpoints (ftckpt-…)")


@router.post(
    "/{job_id}/resume",
    response_model=JobPublic,
    summary="Run a failed or cancelled job again from one of its checkpoints",
)
def resume_job(
    session: SessionDep,
    store: StoreDep,
    request: Request,
    user: CurrentUser,
    job_id: str,
    body: ResumeRequest,
) -> JobPublic:
    job_for(session, job_id, user, manage="resume")
    job = service.resume_job(session=session, store=store, job_id=job_id, checkpoint_id=body.checkpoint)
    log_action(session, request, user, "job_resumed", "job", job_id, checkpoint=body.checkpoint)
    commit(session)
    return JobPublic.of(job)


@router.get("/{job_id}", response_model=JobPublic)
def retrieve_job(session: SessionDep, user: CurrentUser, job_id: str) -> JobPublic:
    job = job_for(session, job_id, user)
    return JobPublic.of(job, waiting_reasons(session=session, jobs=[job]).get(job.id))


class PriorityChange(BaseModel):
    priority: int = Field(ge=0, le=9, description="0-9, higher first; members 0-5, admins up to 9")


@router.post(
    "/{job_id}/priority", response_model=JobPublic, summary="Move a waiting job up or down the queue"
)
def change_priority(
    session: SessionDep, request: Request, user: CurrentUser, job_id: str, body: PriorityChange
) -> JobPublic:
    before = job_for(session, job_id, user, manage="change the priority of").priority
    check_priority(body.priority, user)
    job = service.set_priority(session=session, job_id=job_id, priority=body.priority)
    log_action(
        session, request, user, "job_priority_changed", "job", job_id, before=before, after=job.priority
    )
    commit(session)
    return JobPublic.of(job, waiting_reasons(session=session, jobs=[job]).get(job.id))


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(session: SessionDep, request: Request, user: CurrentUser, job_id: str) -> JobPublic:
    job_for(session, job_id, user, manage="cancel")
    job = service.cancel_job(session=session, job_id=job_id)
    log_action(session, request, user, "job_cancelled", "job", job_id)
    commit(session)
    return JobPublic.of(job)


@router.get("/{job_id}/events", response_model=EventList)
def list_events(
    session: SessionDep,
    user: CurrentUser,
    job_id: str,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> EventList:
    cursor = (
        min(int(after.removeprefix("ftevent-")), DB_INT_MAX)
        if after and after.removeprefix("ftevent-").isdigit()
        else None
    )
    job_for(session, job_id, user)
    events, has_more = service.list_events(session=session, job_id=job_id, after=cursor, limit=limit)
    return EventList(data=[EventPublic.of(e) for e in events], has_more=has_more)


@router.get("/{job_id}/checkpoints", response_model=CheckpointList)
def list_checkpoints(session: SessionDep, user: CurrentUser, job_id: str) -> CheckpointList:
    job = job_for(session, job_id, user)
    checkpoints = service.list_checkpoints(session=session, job_id=job_id)
    return CheckpointList(data=[CheckpointPublic.of(c, job) for c in checkpoints])


@router.get(
    "/{job_id}/metrics",
    response_model=MetricList,
    response_class=JSONResponse,
    summary="Metric points written after a given id",
)
def list_metrics(
    session: SessionDep,
    user: CurrentUser,
    job_id: str,
    after_id: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Response:
    job_for(session, job_id, user)
    rows = session.exec(
        select(  # type: ignore[call-overload]
            Metric.id, Metric.key, Metric.step, Metric.epoch, Metric.value
        )
        .where(Metric.job_id == job_id, col(Metric.id) > after_id)
        .order_by(col(Metric.id))
        .limit(limit)
    ).all()
    # Built directly (the schema above documents it): validating 100k points one by one is slow.
    data = [{"id": i, "key": k, "step": s, "epoch": e, "value": v} for i, k, s, e, v in rows]
    return JSONResponse({"object": "list", "data": data, "last_id": data[-1]["id"] if data else after_id})


@router.get(
    "/{job_id}/series",
    response_model=SeriesList,
    summary="Metric series for charts, min/max-downsampled to about max_points per series",
)
def metric_series(
    session: SessionDep,
    user: CurrentUser,
    job_id: str,
    max_points: Annotated[int, Query(ge=10, le=100_000)] = 2000,
    keys: Annotated[list[str] | None, Query(description="only these metric keys")] = None,
) -> SeriesList:
    job_for(session, job_id, user)
    last_id, series = job_series(session, job_id, max_points=max_points, keys=keys)
    return SeriesList(
        last_id=last_id,
        series={
            key: SeriesPublic(
                steps=s.steps, epochs=s.epochs, values=s.values, total=s.total, downsampled=s.downsampled
            )
            for key, s in series.items()
        },
    )


@router.get("/{job_id}/stream", summary="Live metrics, events and status (server-sent events)")
def stream_job(
    user: CurrentUser,
    job_id: str,
    last_event_id: Annotated[str | None, Header()] = None,
    cursor: str | None = None,
) -> StreamingResponse:
    # Not SessionDep: that session would stay checked out for as long as the stream is open,
    # and a few dozen open job pages would drain the connection pool.
    with read_session() as session:
        job_for(session, job_id, user)
    body = job_events(job_id, last_event_id or cursor, get_settings().sse_poll_seconds)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


def _downloaded(session: SessionDep, request: Request, user: CurrentUser, job_id: str, what: str) -> None:
    log_action(session, request, user, "downloaded", "job", job_id, what=what)
    commit(session)


def _zip_response(store: ArtifactStore, key: str, filename: str) -> StreamingResponse:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return StreamingResponse(store.iter_zip(key), media_type="application/zip", headers=headers)


class AdapterChoice(BaseModel):
    """tunedeck's: which of the job's checkpoints is its adapter (null: the one trained to the end)."""

    checkpoint: str | None = Field(default=None, max_length=64)


@router.post(
    "/{job_id}/adapter", response_model=JobPublic, summary="Use one of a job's checkpoints as its adapter"
)
def choose_adapter(
    session: SessionDep, request: Request, user: CurrentUser, job_id: str, body: AdapterChoice
) -> JobPublic:
    job = job_for(session, job_id, user, manage="choose the adapter of")
    service.use_checkpoint(session=session, job=job, checkpoint_id=body.checkpoint, by=user.username)
    log_action(session, request, user, "job_adapter_chosen", "job", job_id, checkpoint=body.checkpoint)
    commit(session)
    return JobPublic.of(job)


@router.get("/{job_id}/adapter", summary="Download the trained LoRA adapter (zip)")
def download_adapter(
    session: SessionDep, store: StoreDep, request: Request, user: CurrentUser, job_id: str
) -> StreamingResponse:
    job = job_for(session, job_id, user)
    if not job.adapter_key:
        raise HTTPException(404, f"job {job_id} has no adapter yet (status: {job.status.value})")
    _downloaded(session, request, user, job_id, "adapter")
    return _zip_response(store, job.adapter_key, f"{job_id}-adapter.zip")


@router.get(
    "/{job_id}/checkpoints/{checkpoint_id}/download",
    summary="Download a checkpoint's adapter (zip)",
)
def download_checkpoint(
    session: SessionDep, store: StoreDep, request: Request, user: CurrentUser, job_id: str, checkpoint_id: str
) -> StreamingResponse:
    job_for(session, job_id, user)
    checkpoint = service.get_checkpoint(session=session, job_id=job_id, checkpoint_id=checkpoint_id)
    _downloaded(session, request, user, job_id, checkpoint_id)
    return _zip_response(store, checkpoint.artifact_key, f"{job_id}-step{checkpoint.step}.zip")


@router.post(
    "/{job_id}/merge", response_model=MergePublic, summary="Merge the adapter into the base (worker task)"
)
def merge_job(session: SessionDep, request: Request, user: CurrentUser, job_id: str) -> MergePublic:
    job_for(session, job_id, user, manage="merge")
    merge = merges.request_merge(session=session, job_id=job_id)
    log_action(session, request, user, "job_merged", "job", job_id, merge=merge.id)
    commit(session)
    return MergePublic.of(merge)


@router.post(
    "/{job_id}/merge/cancel",
    response_model=MergePublic,
    summary="Cancel the merge under way (queued: at once; running: at its next stage)",
)
def cancel_merge(session: SessionDep, request: Request, user: CurrentUser, job_id: str) -> MergePublic:
    job_for(session, job_id, user, manage="cancel the merge of")
    merge = merges.cancel_merge(session=session, job_id=job_id)
    log_action(session, request, user, "merge_cancelled", "job", job_id, merge=merge.id)
    commit(session)
    return MergePublic.of(merge)


@router.get(
    "/{job_id}/merge", response_model=MergePublic, summary="The latest merge of this job, with progress"
)
def get_merge(session: SessionDep, user: CurrentUser, job_id: str) -> MergePublic:
    job_for(session, job_id, user)
    merge = merges.latest_merge(session=session, job_id=job_id)
    if merge is None:
        raise HTTPException(404, f"job {job_id} has not been merged; POST to …/{job_id}/merge")
    return MergePublic.of(merge)


@router.get("/{job_id}/merged", summary="Download the merged model (zip of safetensors + tokenizer)")
def download_merged(
    session: SessionDep, store: StoreDep, request: Request, user: CurrentUser, job_id: str
) -> StreamingResponse:
    job_for(session, job_id, user)
    merge = merges.latest_merge(session=session, job_id=job_id)
    if merge is None or merge.status != "succeeded" or not merge.artifact_key:
        raise HTTPException(404, f"job {job_id} has no merged model yet")
    _downloaded(session, request, user, job_id, "merged")
    return _zip_response(store, merge.artifact_key, f"{job_id}-merged.zip")
