"""Batch comparisons: the same prompts to 2–4 models. Made here; answered by a short-lane worker
(worker/batches.py), which commits each answer as it arrives."""

from sqlmodel import Session, col, select

from app.core.db import after_commit
from app.core.errors import NotFound
from app.core.ids import new_id
from app.core.queue import BATCH_TASK, JUDGE_TASK, send_short_task
from app.core.rows import read_split, to_messages
from app.core.storage import ArtifactStore
from app.core.tables import BatchOutput, BatchRun, BatchStatus, DatasetFile, Job
from app.core.visibility import visible_to
from app.jobs.service import get_job
from app.playground.schemas import BatchCell, BatchCreate, BatchRow
from app.playground.service import PlaygroundInvalid, check_served


def may_read_job_data(*, session: Session, job: Job, viewer_id: int | None) -> bool:
    """Whether ``viewer_id`` (None: an admin) may read the job's rows: the job, and each of its
    files, is theirs or not private (a job on a private file is private, but check the files too)."""
    if viewer_id is None:
        return True
    owned: list[Job | DatasetFile] = [job]
    for file_id in (job.training_file, job.validation_file):
        if file_id and (dataset := session.get(DatasetFile, file_id)) is not None:
            owned.append(dataset)
    return all(visible_to(o, viewer_id) for o in owned)


def job_prompts(*, session: Session, store: ArtifactStore, job_id: str) -> list[str]:
    """The user prompts of a job's validation rows (its validation file, or its file's split)."""
    job = get_job(session=session, job_id=job_id)
    try:
        if job.validation_file:
            rows = [
                row
                for split in ("train", "validation")
                for row in read_split(store=store, dataset_id=job.validation_file, split=split)
            ]
        else:
            rows = read_split(store=store, dataset_id=job.training_file, split="validation")
    except FileNotFoundError:
        raise PlaygroundInvalid(
            f"the dataset files of job {job_id} are missing from the artifact store", param="source.job_id"
        ) from None
    prompts = []
    for row in rows:
        users = [m["content"] for m in to_messages(row) if m["role"] == "user"]
        if users and users[-1].strip():
            prompts.append(users[-1])
    if not prompts:
        raise PlaygroundInvalid(f"job {job_id} has no validation rows to use", param="source.job_id")
    return prompts


def create_batch(
    *,
    session: Session,
    store: ArtifactStore,
    body: BatchCreate,
    viewer_id: int | None = None,
    owner_id: int | None = None,
) -> BatchRun:
    """Store the batch and its empty cells; it starts running once the request commits.
    ``viewer_id`` is who asks (None: an admin): only models and jobs they may see are used.
    ``owner_id`` made it: the answers come from their models, so only they and admins read them."""
    check_served(session=session, store=store, names=body.models, param="models", viewer_id=viewer_id)
    if body.source is not None:
        source = get_job(session=session, job_id=body.source.job_id)
        if not may_read_job_data(session=session, job=source, viewer_id=viewer_id):
            raise NotFound(f"no fine-tuning job with id {source.id!r}")
        prompts = job_prompts(session=session, store=store, job_id=body.source.job_id)
    else:
        prompts = [p for p in body.prompts or [] if p.strip()]
        if not prompts:
            raise PlaygroundInvalid("give at least one prompt that is not blank", param="prompts")
    prompts = prompts[: body.limit]
    batch = BatchRun(
        id=new_id("batch"),
        models=list(body.models),
        total=len(prompts) * len(body.models),
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        source_job=body.source.job_id if body.source else None,
        owner_id=owner_id,
    )
    session.add(batch)
    session.flush()  # the cells' foreign key needs the batch row first (Postgres checks at once)
    for index, prompt in enumerate(prompts):
        for model in body.models:
            session.add(BatchOutput(batch_id=batch.id, prompt_index=index, model=model, prompt=prompt))
    session.flush()
    after_commit(session, lambda: send_short_task(BATCH_TASK, batch.id))  # a short-lane worker answers
    return batch


def get_batch(*, session: Session, batch_id: str, viewer_id: int | None = None) -> BatchRun:
    """The batch, if ``viewer_id`` may read it (None: an admin or the web app itself): another
    user's batch is, to them, one that does not exist."""
    batch = session.get(BatchRun, batch_id)
    if batch is None or (viewer_id is not None and batch.owner_id not in (None, viewer_id)):
        raise NotFound(f"no batch with id {batch_id!r}")
    return batch


def batch_rows(*, session: Session, batch: BatchRun) -> list[BatchRow]:
    """One row per prompt with each model's answer (None while not answered yet)."""
    cells = session.exec(
        select(BatchOutput).where(BatchOutput.batch_id == batch.id).order_by(col(BatchOutput.prompt_index))
    ).all()
    rows: dict[int, BatchRow] = {}
    for cell in cells:
        row = rows.setdefault(
            cell.prompt_index, BatchRow(prompt_index=cell.prompt_index, prompt=cell.prompt, outputs={})
        )
        row.outputs[cell.model] = BatchCell(output=cell.output, latency_s=cell.latency_s)
    for row in rows.values():  # in the batch's model order
        row.outputs = {m: row.outputs.get(m, BatchCell(output=None, latency_s=None)) for m in batch.models}
    return list(rows.values())


JUDGING = ("queued", "running")


def request_judge(
    *, session: Session, store: ArtifactStore, batch: BatchRun, judge: str, viewer_id: int | None
) -> BatchRun:
    """Queue ``judge`` to compare the batch's answers pairwise, each pair in both orders (so the
    order they are shown in cancels out); its verdicts count on the leaderboard as judge votes."""
    from datetime import timedelta

    from app.core.errors import Conflict
    from app.core.timeutil import utcnow

    if batch.status != BatchStatus.succeeded:
        raise Conflict(f"batch {batch.id} is {batch.status.value}; a judge reads a finished batch")
    recent = batch.heartbeat_at is not None and batch.heartbeat_at > utcnow() - timedelta(seconds=60)
    if batch.judge_status in JUDGING and recent:
        raise Conflict(f"batch {batch.id} is being judged by {batch.judge}; wait for it")
    check_served(session=session, store=store, names=[judge], param="model", viewer_id=viewer_id)
    batch.judge, batch.judge_status, batch.judge_error, batch.heartbeat_at = judge, "queued", None, utcnow()
    session.add(batch)
    after_commit(session, lambda: send_short_task(JUDGE_TASK, batch.id))
    return batch
