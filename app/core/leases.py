"""Leases and retries, torch-free so the worker, the CLI and the web side can all use them.

Each attempt of a job holds a fencing token (the job's ``attempt`` number at claim time) and a
lease it renews while alive. ``reap_expired`` re-queues jobs whose lease ran out (their worker
died), with backoff, up to ``max_attempts``; writes from the old attempt are then refused.
"""

from datetime import timedelta
from functools import partial

from sqlmodel import Session, col, func, select, update

from app.core.config import get_settings
from app.core.db import after_commit, session_scope
from app.core.events import add_event
from app.core.outbox import emit_finished
from app.core.queue import dispatch_training_task
from app.core.scheduling import charge, wake_owner
from app.core.tables import ACTIVE, Job, JobStatus
from app.core.timeutil import utcnow


def backoff_seconds(attempt: int) -> float:
    """Wait before attempt ``attempt + 1``: doubling from the configured base, at most 10 minutes."""
    return float(min(600.0, get_settings().retry_backoff_seconds * 2 ** max(0, attempt - 1)))


def renew(job_id: str, fence: int) -> bool:
    """Extend the lease of attempt ``fence``; False once the job has moved on without it."""
    now = utcnow()
    with session_scope() as session:
        result = session.exec(
            update(Job)
            .where(col(Job.id) == job_id, col(Job.attempt) == fence, col(Job.status).in_(ACTIVE))
            .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=get_settings().lease_seconds))
        )
        return result.rowcount == 1


def reap_expired() -> list[str]:
    """Re-queue (with backoff) or fail every active job whose lease has expired; return their ids."""
    now = utcnow()
    with session_scope() as session:
        query = select(Job).where(col(Job.status).in_(ACTIVE), col(Job.lease_expires_at) < now)
        reaped = []
        for job in session.exec(query).all():
            if retry_or_fail(session, job, reason=f"worker {job.worker} stopped responding (lease expired)"):
                reaped.append(job.id)
                after_commit(session, partial(wake_owner, job.owner_id))  # a slot of theirs is free
        stale = select(Job).where(
            col(Job.status) == JobStatus.retrying,
            col(Job.next_attempt_at) < now - timedelta(seconds=get_settings().lease_seconds),
        )
        for job in session.exec(stale).all():  # its message was lost with a dead worker: send another
            job.next_attempt_at = job.dispatched_at = now
            session.add(job)
            after_commit(
                session, partial(dispatch_training_task, job.id, memory_bytes=job.memory_estimate_bytes)
            )
        waiting = select(Job).where(
            col(Job.status) == JobStatus.queued,
            col(Job.cancel_requested).is_(False),
            func.coalesce(col(Job.dispatched_at), col(Job.created_at))
            < now - timedelta(seconds=get_settings().redispatch_after_seconds),
        )
        for job in session.exec(waiting).all():  # the broker may have lost it (a restart): send again
            job.dispatched_at = now
            session.add(job)
            after_commit(
                session, partial(dispatch_training_task, job.id, memory_bytes=job.memory_estimate_bytes)
            )
        return reaped


def retry_or_fail(session: Session, job: Job, *, reason: str, code: str = "worker_lost") -> JobStatus | None:
    """Move attempt ``job.attempt`` on: retrying after a backoff, or failed after the last attempt.

    Returns the new status, or None when the job had already moved on (another writer won). The
    attempt's time is charged up to its last heartbeat (the worker may have died since).
    """
    now = utcnow()
    guard = (col(Job.id) == job.id, col(Job.attempt) == job.attempt, col(Job.status) == job.status)
    delay = backoff_seconds(job.attempt)
    status = JobStatus.failed if job.attempt >= job.max_attempts else JobStatus.retrying
    if status == JobStatus.failed:
        message = f"{reason}; gave up after {job.attempt} of {job.max_attempts} attempts"
        values: dict[str, object] = {
            "status": JobStatus.failed,
            "finished_at": now,
            "lease_expires_at": None,
            "error": {"code": code, "message": message, "param": None},
        }
    else:
        message = f"{reason}; retrying in {delay:g}s (attempt {job.attempt + 1} of {job.max_attempts})"
        values = {
            "status": JobStatus.retrying,
            "next_attempt_at": now + timedelta(seconds=delay),
            "dispatched_at": now,
            "lease_expires_at": None,
        }
    values |= charge(job, job.heartbeat_at or now)
    if session.exec(update(Job).where(*guard).values(**values)).rowcount != 1:
        return None
    add_event(
        session=session,
        job_id=job.id,
        message=message,
        level="warning" if status == JobStatus.retrying else "error",
    )
    if status == JobStatus.retrying:
        memory = job.memory_estimate_bytes
        after_commit(session, partial(dispatch_training_task, job.id, countdown=delay, memory_bytes=memory))
    else:
        session.refresh(job)  # the hooks get the job as it ended
        emit_finished(session, job)
    return status
