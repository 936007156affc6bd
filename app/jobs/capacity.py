"""What each job and user has used, whether the workers can hold a job at all, and why a
waiting job waits: what the advisor, the pages and the API report. (Which job a worker takes
next is app/core/scheduling.py.)"""

from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from app.core.queue import GIB, short_queue
from app.core.scheduling import blocked_owners, processes
from app.core.spec import TrainingSpec
from app.core.tables import WAITING, Job, WorkerRecord
from app.core.timeutil import utcnow
from app.jobs.advisor import Check

KNOWN_WITHIN = timedelta(minutes=5)  # a worker seen this recently counts when sizing a job


def _training_workers() -> tuple[Any, ...]:
    """Workers seen in the last few minutes that take training jobs (not short-lane only)."""
    return (
        col(WorkerRecord.heartbeat_at) >= utcnow() - KNOWN_WITHIN,
        col(WorkerRecord.queue) != short_queue(),
    )


def largest_worker(*, session: Session) -> WorkerRecord | None:
    """The worker with the most memory per device among those seen in the last few minutes."""
    query = (
        select(WorkerRecord)
        .where(
            *_training_workers(),
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
    workers = list(session.exec(select(WorkerRecord).where(*_training_workers())).all())
    if not workers or any(w.device.startswith("cpu") for w in workers):
        return None
    return max(workers, key=lambda w: w.device_count)


def _gib(size: float) -> str:
    return f"{size / GIB:.2f}" if size < 10 * GIB else f"{size / GIB:.1f}"


def memory_check(*, session: Session, spec: TrainingSpec, budget: dict[str, int]) -> Check | None:
    """An error when workers are known and none advertises the memory the job needs."""
    biggest = largest_worker(session=session)
    need = budget.get("total_checkpointed", budget.get("total", 0))  # auto turns checkpointing on to fit
    if biggest is None or biggest.device_memory_gib is None or need <= biggest.device_memory_gib * GIB:
        return None
    activations = budget.get("activations", 0) - budget.get("total", 0) + need
    rest = need - budget.get("weights", 0) - activations
    remedies = ["quantization 4bit"] if spec.quantization != "4bit" else []
    remedies.append("a smaller batch_size or max_seq_length")
    if spec.gradient_checkpointing is False:
        remedies.append("gradient checkpointing")
    *first, last = remedies
    tried = f"{', '.join(first)}{',' if len(first) > 1 else ''} or {last}" if first else last
    message = (
        f"this job needs about {_gib(need)} GiB (model {_gib(budget.get('weights', 0))}, activations "
        f"{_gib(activations)}, adapter and optimizer {_gib(rest)}); the largest worker "
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
        elif gpu_host is not None and processes(job) > gpu_host.device_count:
            reasons[job.id] = (
                f"waiting: it runs {processes(job)} processes, one per GPU; "
                f"no worker sees more than {gpu_host.device_count}"
            )
    return reasons
