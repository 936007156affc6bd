"""Which waiting job a worker takes next, and what each job and user has used.

A queue message only wakes a worker; the database decides. The woken worker claims the best
waiting job it can hold — highest priority, then oldest — skipping jobs whose memory estimate
exceeds its advertised memory and jobs whose owner already runs their limit. Each try is one
conditional UPDATE that bumps ``attempt`` (the fencing token), so two workers never take one job.
Torch-free: the worker, the reaper and the web side all use it.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, or_, select, update

from app.core.config import get_settings
from app.core.db import read_session, session_scope
from app.core.queue import GIB, dispatch_training_task, queue_above
from app.core.spec import TrainingSpec
from app.core.tables import Job, JobStatus, User, WorkerRecord
from app.core.timeutil import utcnow
from app.jobs.advisor import Check

WAITING = (JobStatus.queued, JobStatus.retrying)
ACTIVE = (JobStatus.validating_files, JobStatus.running)
CLOCK_SLACK = timedelta(seconds=1)
MEMBER_MAX_PRIORITY = 5  # members queue at 0-5; admins may also expedite with 6-9
CANDIDATES = 50  # waiting jobs a worker looks at per wake-up (those it cannot claim are filtered out first)
KNOWN_WITHIN = timedelta(minutes=5)  # a worker seen this recently counts when sizing a job


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
        if gpus and _processes(job) > gpus:
            continue
        used = _processes(job) if gpus else 0
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


def _processes(job: Job) -> int:
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
        "device_seconds": col(Job.device_seconds) + seconds * _processes(job),
        "attempt_started_at": None,
    }


@dataclass(frozen=True)
class Usage:
    gpu_seconds: float = 0.0
    device_seconds: float = 0.0

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600

    @property
    def device_hours(self) -> float:
        return self.device_seconds / 3600

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.gpu_seconds + other.gpu_seconds, self.device_seconds + other.device_seconds)


def job_usage(job: Job) -> Usage:
    """What the job has used so far, the running attempt included."""
    return Usage(job.gpu_seconds, job.device_seconds) + _running_attempt(job)


def _running_attempt(job: Job) -> Usage:
    if job.status not in ACTIVE or job.attempt_started_at is None:
        return Usage()
    seconds = max(0.0, (utcnow() - job.attempt_started_at).total_seconds())
    return Usage(seconds * job.attempt_gpus, seconds * _processes(job))


def usage_by_owner(*, session: Session) -> dict[int, Usage]:
    """Each owner's GPU- and device-seconds over all their jobs, running attempts included."""
    query = (
        select(Job.owner_id, func.sum(Job.gpu_seconds), func.sum(Job.device_seconds))
        .where(col(Job.owner_id).is_not(None))
        .group_by(col(Job.owner_id))
    )
    usage = {int(o): Usage(float(g or 0), float(d or 0)) for o, g, d in session.exec(query).all() if o}
    for job in session.exec(select(Job).where(col(Job.status).in_(ACTIVE), col(Job.owner_id).is_not(None))):
        owner = job.owner_id or 0
        usage[owner] = usage.get(owner, Usage()) + _running_attempt(job)
    return usage


def largest_worker(*, session: Session) -> WorkerRecord | None:
    """The worker with the most memory per device among those seen in the last few minutes."""
    query = (
        select(WorkerRecord)
        .where(
            col(WorkerRecord.heartbeat_at) >= utcnow() - KNOWN_WITHIN,
            col(WorkerRecord.device_memory_gib).is_not(None),
        )
        .order_by(col(WorkerRecord.device_memory_gib).desc())
    )
    return session.exec(query.limit(1)).first()


def gpu_check(*, session: Session, spec: TrainingSpec) -> Check | None:
    """An error when every worker seen lately is a GPU worker and none sees the GPUs the job asks
    for (one per process, on one host). A CPU worker runs any number of processes."""
    if spec.num_processes <= 1:
        return None
    most = largest_gpu_host(session=session)
    if most is None or most.device_count >= spec.num_processes:
        return None
    message = (
        f"num_processes {spec.num_processes} needs {spec.num_processes} GPUs on one host; the largest "
        f"worker ({most.name}) sees {most.device_count} — lower num_processes, or start a worker that "
        "sees more GPUs (one worker per host rather than one per GPU)"
    )
    return Check("error", "no_worker_fits", message, "num_processes")


def largest_gpu_host(*, session: Session) -> WorkerRecord | None:
    """Of the workers seen in the last few minutes, the one that sees the most GPUs — or None when
    none was seen or one of them is a CPU worker (which runs any number of processes)."""
    query = select(WorkerRecord).where(col(WorkerRecord.heartbeat_at) >= utcnow() - KNOWN_WITHIN)
    workers = list(session.exec(query).all())
    if not workers or any(w.device.startswith("cpu") for w in workers):
        return None
    return max(workers, key=lambda w: w.device_count)


def _gib(size: float) -> str:
    return f"{size / GIB:.2f}" if size < 10 * GIB else f"{size / GIB:.1f}"


def memory_check(*, session: Session, spec: TrainingSpec, budget: dict[str, int]) -> Check | None:
    """An error when workers are known and none advertises the memory the job needs."""
    biggest = largest_worker(session=session)
    need = budget.get("total", 0)
    if biggest is None or biggest.device_memory_gib is None or need <= biggest.device_memory_gib * GIB:
        return None
    rest = need - budget.get("weights", 0) - budget.get("activations", 0)
    remedies = ["quantization 4bit"] if spec.quantization != "4bit" else []
    remedies.append("a smaller batch_size or max_seq_length")
    if not spec.gradient_checkpointing:
        remedies.append("gradient checkpointing")
    *first, last = remedies
    tried = f"{', '.join(first)}{',' if len(first) > 1 else ''} or {last}" if first else last
    message = (
        f"this job needs about {_gib(need)} GiB (model {_gib(budget.get('weights', 0))}, activations "
        f"{_gib(budget.get('activations', 0))}, adapter and optimizer {_gib(rest)}); the largest worker "
        f"({biggest.name}) has {biggest.device_memory_gib:.2f} GiB — try {tried}"
    )
    return Check("error", "no_worker_fits", message, None)


def waiting_reasons(*, session: Session, jobs: list[Job]) -> dict[str, str]:
    """Why waiting jobs are not taken yet, where it is more than 'every worker is busy'."""
    waiting = [j for j in jobs if j.status in WAITING and not j.cancel_requested]
    if not waiting:
        return {}
    blocked = blocked_owners(session=session)
    biggest = largest_worker(session=session)
    gpu_host = largest_gpu_host(session=session)
    reasons = {}
    for job in waiting:
        if job.owner_id is not None and job.owner_id in blocked:
            running, limit = blocked[job.owner_id]
            plural = "s" if running != 1 else ""
            reasons[job.id] = (
                f"waiting: {job.owner} already runs {running} job{plural} (the limit is {limit})"
            )
        elif (
            biggest
            and biggest.device_memory_gib
            and (job.memory_estimate_bytes or 0) > biggest.device_memory_gib * GIB
        ):
            reasons[job.id] = (
                f"waiting: it needs about {_gib(job.memory_estimate_bytes or 0)} GiB; "
                f"the largest worker has {biggest.device_memory_gib:.2f} GiB"
            )
        elif gpu_host is not None and _processes(job) > gpu_host.device_count:
            reasons[job.id] = (
                f"waiting: it runs {_processes(job)} processes, one per GPU; "
                f"no worker sees more than {gpu_host.device_count}"
            )
    return reasons
