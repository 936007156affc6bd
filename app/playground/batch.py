"""Batch comparisons: the same prompts to 2–4 models, answered one call at a time by the model
server in a background thread of the web process; each answer is committed as it arrives."""

import logging
import threading
import time

import httpx
from sqlmodel import Session, col, select

from app.auth.deps import internal_token
from app.core.config import get_settings
from app.core.db import after_commit, session_scope
from app.core.errors import NotFound
from app.core.ids import new_id
from app.core.storage import ArtifactStore
from app.core.tables import BatchOutput, BatchRun, BatchStatus, DatasetFile, Job
from app.core.timeutil import utcnow
from app.datasets.parsing import to_messages
from app.datasets.service import read_split
from app.jobs.service import get_job
from app.playground.schemas import BatchCell, BatchCreate, BatchRow
from app.playground.service import PlaygroundInvalid, check_served

log = logging.getLogger(__name__)
TIMEOUT = httpx.Timeout(10.0, read=600.0)


class BatchCallFailed(RuntimeError):
    """The model server did not answer one cell; the message says why."""


def may_read_job_data(*, session: Session, job: Job, viewer_id: int | None) -> bool:
    """Whether ``viewer_id`` (None: an admin) may read the job's rows: the job, and each of its
    files, is theirs or not private (a job on a private file is private, but check the files too)."""
    if viewer_id is None:
        return True
    owned: list[Job | DatasetFile] = [job]
    for file_id in (job.training_file, job.validation_file):
        if file_id and (dataset := session.get(DatasetFile, file_id)) is not None:
            owned.append(dataset)
    return all(not o.private or o.owner_id == viewer_id for o in owned)


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
    after_commit(session, lambda: start_batch(batch.id))
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


def start_batch(batch_id: str) -> None:
    """Run the batch in a daemon thread of this process."""
    threading.Thread(target=run_batch, args=(batch_id,), name=f"playground-{batch_id}", daemon=True).start()


def resume_unfinished() -> list[str]:
    """Start again the batches a previous web process left queued or running (its thread died
    with it); answered cells are kept, the rest are asked. Called when the web app starts."""
    with session_scope() as session:
        query = select(BatchRun.id).where(col(BatchRun.status).in_([BatchStatus.queued, BatchStatus.running]))
        ids = list(session.exec(query).all())
    for batch_id in ids:
        log.info("resuming batch %s left unfinished by a restart", batch_id)
        start_batch(batch_id)
    return ids


def _open_cells(session: Session, batch: BatchRun) -> list[tuple[int, str, str]]:
    """(prompt index, model, prompt) of the cells not answered yet, prompt by prompt, in model order."""
    query = select(BatchOutput).where(BatchOutput.batch_id == batch.id, col(BatchOutput.output).is_(None))
    order = {m: i for i, m in enumerate(batch.models)}
    cells = sorted(session.exec(query).all(), key=lambda c: (c.prompt_index, order.get(c.model, 0)))
    return [(c.prompt_index, c.model, c.prompt) for c in cells]


def run_batch(batch_id: str) -> None:
    """Answer every open cell, prompt by prompt, model by model; a failed call fails the batch."""
    with session_scope() as session:
        batch = get_batch(session=session, batch_id=batch_id)
        batch.status = BatchStatus.running
        todo = _open_cells(session, batch)
        max_tokens, temperature = batch.max_tokens, batch.temperature
    status, error = BatchStatus.succeeded, None
    try:
        with httpx.Client(timeout=TIMEOUT) as http:
            for index, model, prompt in todo:
                output, latency = ask(
                    http, model=model, prompt=prompt, max_tokens=max_tokens, temperature=temperature
                )
                with session_scope() as session:
                    cell = session.get(BatchOutput, (batch_id, index, model))
                    if cell is not None:
                        cell.output, cell.latency_s = output, latency
                    get_batch(session=session, batch_id=batch_id).progress += 1
    except Exception as exc:  # recorded on the batch: the page shows it
        log.warning("batch %s failed: %s", batch_id, exc)
        status, error = BatchStatus.failed, str(exc)[:2000]
    with session_scope() as session:
        batch = get_batch(session=session, batch_id=batch_id)
        batch.status, batch.error, batch.finished_at = status, error, utcnow()


def _chat_url() -> tuple[str, dict[str, str]]:
    settings = get_settings()
    upstream = settings.model_server_url.rstrip("/").removesuffix("/v1")
    if settings.model_server_api_key:  # an external OpenAI-compatible server
        headers = {"authorization": f"Bearer {settings.model_server_api_key}"}
    else:  # tunedeck's own: the models were checked against the asking user when the batch was made
        headers = {"authorization": f"Bearer {internal_token()}"}
    return f"{upstream}/v1/chat/completions", headers


def ask(
    http: httpx.Client, *, model: str, prompt: str, max_tokens: int, temperature: float
) -> tuple[str, float]:
    """One non-streamed answer from the model server and how long it took, in seconds."""
    url, headers = _chat_url()
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": temperature,
    }
    started = time.monotonic()
    try:
        answer = http.post(url, json=body, headers=headers)
    except httpx.TransportError as exc:
        raise BatchCallFailed(f"the model server at {url} is not reachable ({exc})") from None
    latency = time.monotonic() - started
    if answer.status_code != 200:
        try:
            message = answer.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = answer.text[:300]
        raise BatchCallFailed(f"{model}: the model server answered {answer.status_code}: {message}")
    return str(answer.json()["choices"][0]["message"]["content"] or ""), latency
