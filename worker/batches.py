"""Answering playground batch compares: short-lane work.

A batch is queued as a ``tunedeck.batch`` task when it is made (app/playground/batch.py). The
worker that takes it claims it with one conditional UPDATE (queued → running, or running with a
heartbeat older than ``STALE_AFTER``: its worker died), then asks the model server for each open
cell, ``CONCURRENCY`` at a time in prompt then model order, committing each answer and its
heartbeat as it arrives;
a restarted batch asks only what is still open. A short-lane worker sweeps for batches whose
task never came or whose worker died.
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
from sqlmodel import Session, col, func, or_, select, update

from app.core.config import get_settings
from app.core.credentials import internal_token
from app.core.db import read_session, session_scope
from app.core.queue import BATCH_TASK
from app.core.tables import BatchOutput, BatchRun, BatchStatus
from app.core.timeutil import utcnow
from worker.sweep import Sweep

log = logging.getLogger(__name__)
TIMEOUT = httpx.Timeout(10.0, read=600.0)
STALE_AFTER = timedelta(seconds=60)  # a running batch not heard of for this long lost its worker
SWEEP_SECONDS = 15.0
QUEUED_TOO_LONG = timedelta(seconds=30)  # a queued batch not taken by then lost its task
CONCURRENCY = 8  # cells asked at once: the model server batches concurrent replies


class BatchCallFailed(RuntimeError):
    """The model server did not answer one cell; the message says why."""


def _claim(batch_id: str) -> bool:
    now = utcnow()
    takeable = or_(
        col(BatchRun.status) == BatchStatus.queued,
        (col(BatchRun.status) == BatchStatus.running) & (col(BatchRun.heartbeat_at) < now - STALE_AFTER),
    )
    with session_scope() as session:
        claimed = session.exec(
            update(BatchRun)
            .where(col(BatchRun.id) == batch_id, takeable)
            .values(status=BatchStatus.running, heartbeat_at=now)
        )
        return claimed.rowcount == 1


def _open_cells(session: Session, batch: BatchRun) -> list[tuple[int, str, str]]:
    """(prompt index, model, prompt) of the cells not answered yet, prompt by prompt, in model order."""
    query = select(BatchOutput).where(BatchOutput.batch_id == batch.id, col(BatchOutput.output).is_(None))
    order = {m: i for i, m in enumerate(batch.models)}
    cells = sorted(session.exec(query).all(), key=lambda c: (c.prompt_index, order.get(c.model, 0)))
    return [(c.prompt_index, c.model, c.prompt) for c in cells]


def run_batch(batch_id: str) -> str:
    """Answer every open cell of ``batch_id`` if this worker may take it; a failed call fails the
    batch. Returns the batch's final status ("skipped" when it was not ours to run)."""
    if not _claim(batch_id):
        return "skipped"
    with read_session() as session:
        batch = session.get(BatchRun, batch_id)
        assert batch is not None
        todo = _open_cells(session, batch)
        max_tokens, temperature = batch.max_tokens, batch.temperature
    status, error = BatchStatus.succeeded, None
    failed = threading.Event()

    def answer(http: httpx.Client, index: int, model: str, prompt: str) -> None:
        if failed.is_set():  # one cell failed the batch: ask nothing more
            return
        try:
            output, latency = ask(
                http, model=model, prompt=prompt, max_tokens=max_tokens, temperature=temperature
            )
        except Exception:
            failed.set()
            raise
        with session_scope() as session:
            cell = session.get(BatchOutput, (batch_id, index, model))
            if cell is not None:
                cell.output, cell.latency_s = output, latency
            session.exec(
                update(BatchRun)
                .where(col(BatchRun.id) == batch_id)
                .values(progress=col(BatchRun.progress) + 1, heartbeat_at=utcnow())
            )

    try:  # several cells at once, so the model server's batch fills (its replies share passes)
        with httpx.Client(timeout=TIMEOUT) as http, ThreadPoolExecutor(CONCURRENCY) as pool:
            for done in [pool.submit(answer, http, *cell) for cell in todo]:
                done.result()
    except Exception as exc:  # recorded on the batch: the page shows it
        log.warning("batch %s failed: %s", batch_id, exc)
        status, error = BatchStatus.failed, str(exc)[:2000]
    with session_scope() as session:
        session.exec(
            update(BatchRun)
            .where(col(BatchRun.id) == batch_id)
            .values(status=status, error=error, finished_at=utcnow())
        )
    return status.value


def chat_url() -> tuple[str, dict[str, str]]:
    """The model server's chat completions URL and the credentials to send it."""
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
    url, headers = chat_url()
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


def lost_batches() -> list[str]:
    """Batches whose task never came (queued too long) or whose worker died (a stale heartbeat);
    each is marked as sent again now, so the next sweep leaves it alone for a while."""
    now = utcnow()
    last_heard = func.coalesce(col(BatchRun.heartbeat_at), col(BatchRun.created_at))
    query = select(BatchRun).where(
        or_(
            (col(BatchRun.status) == BatchStatus.queued) & (last_heard < now - QUEUED_TOO_LONG),
            (col(BatchRun.status) == BatchStatus.running) & (last_heard < now - STALE_AFTER),
        )
    )
    with session_scope() as session:
        lost = list(session.exec(query).all())
        for batch in lost:
            if batch.status == BatchStatus.queued:
                batch.heartbeat_at = now
                session.add(batch)
        return [batch.id for batch in lost]


def batch_sweep() -> Sweep:
    """The short-lane thread that queues lost batches again."""
    return Sweep("batch", lost_batches, BATCH_TASK, SWEEP_SECONDS)
