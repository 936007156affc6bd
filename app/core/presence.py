"""Workers online: each worker process upserts its row every ``BEAT_SECONDS`` (worker/beacon.py)."""

import os
import socket
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session, col, select

from app.core.db import session_scope
from app.core.tables import ACTIVE, Job, ProcessRecord, WorkerRecord
from app.core.timeutil import utcnow

BEAT_SECONDS = 10.0
ONLINE_WITHIN = timedelta(seconds=3 * BEAT_SECONDS)


def announce(
    name: str, *, queue: str, device: str, device_count: int, device_memory_gib: float | None
) -> None:
    """Insert or refresh this worker's row (a fresh start clears ``stopped_at``)."""
    now = utcnow()
    with session_scope() as session:
        row = session.get(WorkerRecord, name)
        if row is None or row.stopped_at is not None or row.pid != os.getpid():
            row = row or WorkerRecord(name=name, host="", pid=0, device="", queue=queue)
            row.started_at = now
        row.host, row.pid, row.queue = socket.gethostname(), os.getpid(), queue
        row.device, row.device_count, row.device_memory_gib = device, device_count, device_memory_gib
        row.heartbeat_at, row.stopped_at = now, None
        session.add(row)


def sign_off(name: str) -> None:
    with session_scope() as session:
        row = session.get(WorkerRecord, name)
        if row is not None:
            row.stopped_at = utcnow()
            session.add(row)


@dataclass(frozen=True)
class WorkerView:
    record: WorkerRecord
    job: Job | None  # the job it is running, if any


def online_workers(*, session: Session) -> list[WorkerView]:
    """Workers that announced themselves lately and did not sign off, with their current job."""
    since = utcnow() - ONLINE_WITHIN
    query = select(WorkerRecord).where(
        col(WorkerRecord.heartbeat_at) >= since, col(WorkerRecord.stopped_at).is_(None)
    )
    workers = list(session.exec(query.order_by(col(WorkerRecord.name))).all())
    running = {
        job.worker: job
        for job in session.exec(select(Job).where(col(Job.status).in_(ACTIVE))).all()
        if job.worker
    }
    return [WorkerView(worker, running.get(worker.name)) for worker in workers]


def record_process(
    process_id: str,
    *,
    name: str,
    pid: int | None,
    state: str,
    restarts: int,
    last_exit: str | None,
    exited: bool = False,
) -> None:
    """Insert or refresh a supervised process's row (``exited``: it died just now)."""
    now = utcnow()
    with session_scope() as session:
        row = session.get(ProcessRecord, process_id) or ProcessRecord(
            id=process_id, name=name, host=socket.gethostname(), state=state
        )
        row.pid, row.state, row.restarts, row.last_exit, row.updated_at = pid, state, restarts, last_exit, now
        if exited:
            row.last_exit_at = now
        session.add(row)


def touch_processes(process_ids: list[str]) -> None:
    """The supervisor is alive: its rows stay on the overview."""
    with session_scope() as session:
        for row in session.exec(select(ProcessRecord).where(col(ProcessRecord.id).in_(process_ids))).all():
            row.updated_at = utcnow()
            session.add(row)


def supervised_processes(*, session: Session) -> list[ProcessRecord]:
    """Processes a running `tunedeck run` looks after (its rows are refreshed every beat)."""
    since = utcnow() - ONLINE_WITHIN
    query = select(ProcessRecord).where(
        col(ProcessRecord.updated_at) >= since, col(ProcessRecord.state) != "stopped"
    )
    return list(session.exec(query.order_by(col(ProcessRecord.host), col(ProcessRecord.name))).all())
