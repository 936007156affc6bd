"""What each job and each user has used: GPU-hours (the GPUs a job held) and device-hours (its
processes, CPU or GPU), the running attempt included. Quotas, the account page and the job pages
read these."""

from dataclasses import dataclass

from sqlmodel import Session, col, func, select

from app.core.scheduling import processes
from app.core.tables import ACTIVE, Job
from app.core.timeutil import utcnow


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
    return Usage(seconds * job.attempt_gpus, seconds * processes(job))


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
