"""Which waiting job a worker takes next, and what an attempt costs.

A queue message only wakes a worker; the database decides. The woken worker claims the best
waiting job it can hold — highest priority, then oldest — skipping jobs whose memory estimate
exceeds its advertised memory and jobs whose owner already runs their limit. Each try is one
conditional UPDATE that bumps ``attempt`` (the fencing token), so two workers never take one job.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, or_, select, update

from app.core.config import get_settings
from app.core.db import read_session, session_scope
from app.core.queue import GIB, dispatch_training_task, queue_above
from app.core.tables import ACTIVE, WAITING, Job, JobStatus, User
from app.core.timeutil import utcnow

MEMBER_MAX_PRIORITY = 5  # members queue at 0-5; admins may also expedite with 6-9
CLOCK_SLACK = timedelta(seconds=1)
CANDIDATES = 50  # waiting jobs a worker looks at per wake-up (those it cannot claim are filtered out first)


@dataclass(frozen=True)
class Claim:
    job_id: str
    fence: int  # the attempt number this worker now owns


def claim_next(*, worker: str, memory_bytes: int | None, gpus: int, only: str | None = None) -> Claim | None:
    """Take the best waiting job this worker can hold (``only``: just that job, if it may run).
    ``gpus``: the GPUs this worker sees (0 on CPU); a job wanting more processes than that (one
    per GPU) is left for a worker with enough. On CPU any number of processes can run."""
    now = utcnow()
    with read_session() as session:
        blocked = blocked_owners(session=session)
        query = select(Job).where(
            *_claimable(now), or_(col(Job.owner_id).is_(None), col(Job.owner_id).not_in(list(blocked)))
        )
        if memory_bytes is not None:
            fits = or_(
                col(Job.memory_estimate_bytes).is_(None), col(Job.memory_estimate_bytes) <= memory_bytes
            )
            query = query.where(fits)
        if only is not None:
            query = query.where(col(Job.id) == only)
        order = (col(Job.priority).desc(), col(Job.created_at), col(Job.id))
        candidates = list(session.exec(query.order_by(*order).limit(CANDIDATES)).all())
        limits = owner_limits(session=session, owner_ids={j.owner_id for j in candidates if j.owner_id})
    for job in candidates:
        if gpus and processes(job) > gpus:
            continue
        used = processes(job) if gpus else 0
        fence = _claim(job, worker=worker, limit=limits.get(job.owner_id or 0, 0), gpus=used, now=now)
        if fence is not None:
            return Claim(job.id, fence)
    return None


def _claimable(now: datetime) -> tuple[Any, ...]:
    return (
        col(Job.status).in_(WAITING),
        col(Job.cancel_requested).is_(False),
        or_(col(Job.next_attempt_at).is_(None), col(Job.next_attempt_at) <= now + CLOCK_SLACK),
    )


def _claim(job: Job, *, worker: str, limit: int, gpus: int, now: datetime) -> int | None:
    """One conditional UPDATE; with a limit it also requires the owner to run fewer than ``limit``."""
    guard = [col(Job.id) == job.id, *_claimable(now)]
    with session_scope() as session:
        if limit and job.owner_id is not None:
            # Postgres: one owner's claims take turns on their user row, so the count below sees
            # a claim that committed a moment ago (SQLite serialises every write anyway)
            session.exec(select(User.id).where(col(User.id) == job.owner_id).with_for_update())
            other = sa.orm.aliased(Job)
            running = (
                select(func.count())
                .select_from(other)
                .where(other.owner_id == job.owner_id, col(other.status).in_(ACTIVE))
                .scalar_subquery()
            )
            guard.append(running < limit)
        row = session.exec(
            update(Job)
            .where(*guard)
            .values(
                status=JobStatus.validating_files,
                worker=worker,
                attempt=col(Job.attempt) + 1,
                started_at=func.coalesce(col(Job.started_at), now),
                attempt_started_at=now,
                attempt_gpus=gpus,
                heartbeat_at=now,
                lease_expires_at=now + timedelta(seconds=get_settings().lease_seconds),
                next_attempt_at=None,
            )
            .returning(col(Job.attempt))
        ).first()
    return None if row is None else int(row[0])


def processes(job: Job) -> int:
    """The processes (one per GPU on a GPU worker) the job trains on."""
    return max(1, int(job.hyperparameters.get("num_processes") or 1))


def limit_of(user: User | None) -> int:
    """Jobs ``user`` may run at once; 0 means no limit."""
    if user is not None and user.max_concurrent_jobs is not None:
        return user.max_concurrent_jobs
    return get_settings().max_concurrent_jobs_per_user


def owner_limits(*, session: Session, owner_ids: set[int]) -> dict[int, int]:
    users = {u.id: u for u in session.exec(select(User).where(col(User.id).in_(owner_ids))).all()}
    return {owner: limit_of(users.get(owner)) for owner in owner_ids}


def running_counts(*, session: Session) -> dict[int, int]:
    """Jobs each owner has running (or validating) now."""
    query = (
        select(Job.owner_id, func.count())
        .where(col(Job.status).in_(ACTIVE), col(Job.owner_id).is_not(None))
        .group_by(col(Job.owner_id))
    )
    return {int(owner): int(count) for owner, count in session.exec(query).all() if owner is not None}


def blocked_owners(*, session: Session) -> dict[int, tuple[int, int]]:
    """Owners who run as many jobs as their limit allows: owner id → (running, limit)."""
    running = running_counts(session=session)
    limits = owner_limits(session=session, owner_ids=set(running))
    return {o: (n, limits[o]) for o, n in running.items() if limits[o] and n >= limits[o]}


def wake(job: Job, *, queue: str | None = None) -> None:
    """Send a wake-up for waiting ``job`` to its memory tier (or ``queue``), after its backoff."""
    now = utcnow()
    countdown = (job.next_attempt_at - now).total_seconds() if job.next_attempt_at else 0.0
    memory = job.memory_estimate_bytes
    dispatch_training_task(
        job.id, countdown=countdown if countdown > 0 else None, memory_bytes=memory, queue=queue
    )


def wake_owner(owner_id: int | None) -> None:
    """One of the owner's jobs ended: wake their best waiting job, which their limit may have held back."""
    if owner_id is None:
        return
    with read_session() as session:
        query = select(Job).where(
            Job.owner_id == owner_id, col(Job.status).in_(WAITING), col(Job.cancel_requested).is_(False)
        )
        job = session.exec(query.order_by(col(Job.priority).desc(), col(Job.created_at)).limit(1)).first()
    if job is not None:
        wake(job)


def pass_on(woken_by: str, claimed: str | None, memory_gib: float | None) -> None:
    """Keep the wake-up of job ``woken_by`` alive when this worker did not take it.

    It took a better job (so another worker should wake for this one), it cannot hold it (the
    tier above its own memory gets it), or the job's backoff is not over (sent again for then).
    A job its owner's limit holds back is woken by ``wake_owner`` instead.
    """
    now = utcnow()
    with read_session() as session:
        job = session.get(Job, woken_by)
        if job is None or job.id == claimed or job.status not in WAITING or job.cancel_requested:
            return
        if job.owner_id is not None and job.owner_id in blocked_owners(session=session):
            return
    if memory_gib is not None and (job.memory_estimate_bytes or 0) > memory_gib * GIB:
        above = queue_above(memory_gib)
        if above is not None:
            wake(job, queue=above)
    elif claimed is not None or (job.next_attempt_at is not None and job.next_attempt_at > now):
        wake(job)


def charge(job: Job, until: datetime | None) -> dict[str, Any]:
    """UPDATE values that add the attempt's time × devices to the job (GPUs: 0 on a CPU worker)."""
    if job.attempt_started_at is None:
        return {}
    seconds = max(0.0, ((until or utcnow()) - job.attempt_started_at).total_seconds())
    return {
        "gpu_seconds": col(Job.gpu_seconds) + seconds * job.attempt_gpus,
        "device_seconds": col(Job.device_seconds) + seconds * processes(job),
        "attempt_started_at": None,
    }
