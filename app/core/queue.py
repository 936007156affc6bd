"""The Celery producer. The web side sends tasks by name and never imports ``worker``.

Two lanes: training (one long job per worker, its queues per memory tier) and short (merges,
webhook deliveries, playground batches), which a worker of its own consumes so that short work
never waits behind training (`tunedeck run` starts both; a plain `tunedeck worker` takes both).
"""

import logging
from functools import lru_cache
from typing import Any

from celery import Celery

from app.core.config import Settings, get_settings

TRAIN_TASK = "tunedeck.train"
MERGE_TASK = "tunedeck.merge"
DELIVER_TASK = "tunedeck.deliver"  # one webhook delivery's next attempt
BATCH_TASK = "tunedeck.batch"  # a playground batch compare
EVAL_TASK = "tunedeck.eval"  # an eval run: generate and grade its items
JUDGE_TASK = "tunedeck.judge"  # a judge model comparing a batch's answers pairwise
LANES = ("train", "short")
log = logging.getLogger(__name__)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for long, one-at-a-time GPU jobs, shared by producer and worker."""
    if settings.redis_url:
        broker = settings.redis_url
        # Redis re-delivers an unacked message after this long; it must exceed any training job.
        # A re-delivery that still comes is harmless: the claim in the database refuses it.
        transport_options: dict[str, Any] = {
            "visibility_timeout": settings.redis_visibility_timeout_seconds,
            **settings.redis_transport_options,
        }
    else:
        folder = settings.broker_dir / "queue"
        folder.mkdir(parents=True, exist_ok=True)
        broker = "filesystem://"
        control = settings.broker_dir / "control"
        control.mkdir(parents=True, exist_ok=True)
        transport_options = {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(control),  # else kombu writes ./control in the working directory
            "store_processed": False,
        }
    return {
        "broker_url": broker,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": settings.queue,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_ignore_result": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
    }


@lru_cache
def _producer(broker_key: str) -> Celery:
    celery = Celery("tunedeck")
    celery.conf.update(celery_config(get_settings()))
    return celery


# A training message only wakes a worker; the database decides which job it takes
# (app/jobs/scheduling.py). Messages go to a queue per memory tier so that the workers that wake
# are those that can hold the job: a job's message goes to the largest tier at or below its
# estimate, and a worker consumes every tier up to its memory (plus the default queue). A worker
# within the same tier step but below the estimate passes the message to the tier above its own
# memory (app/jobs/scheduling.py: pass_on). Tiers sit at or below what real devices report; the
# smallest serve CPU workers with declared memory and tests with tiny models.
MEMORY_TIERS_GIB = (0.125, 0.25, 0.5, 1, 2, 4, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192)
GIB = 2**30


def tier_queue(tier_gib: float) -> str:
    return f"{get_settings().queue}.mem-{tier_gib:g}"


def training_queue(memory_bytes: int | None) -> str:
    """The queue for a job needing ``memory_bytes`` (None or below every tier: the default queue)."""
    below = [t for t in MEMORY_TIERS_GIB if memory_bytes is not None and t * GIB <= memory_bytes]
    return tier_queue(below[-1]) if below else get_settings().queue


def worker_queues(memory_gib: float | None) -> list[str]:
    """Every queue a worker with ``memory_gib`` per device consumes, the default queue first."""
    tiers = [t for t in MEMORY_TIERS_GIB if memory_gib is not None and t <= memory_gib]
    return [get_settings().queue, *(tier_queue(t) for t in tiers)]


def queue_above(memory_gib: float) -> str | None:
    """The smallest tier whose workers all have more than ``memory_gib``, if there is one."""
    return next((tier_queue(t) for t in MEMORY_TIERS_GIB if t > memory_gib), None)


def send_training_task(
    job_id: str, countdown: float | None = None, memory_bytes: int | None = None, queue: str | None = None
) -> None:
    """Wake a worker that can hold ``memory_bytes`` for job ``job_id`` (call only after the job row
    is committed); ``queue`` overrides the tier."""
    settings = get_settings()
    producer = _producer(settings.redis_url or str(settings.broker_dir))
    target = queue or training_queue(memory_bytes)
    producer.send_task(TRAIN_TASK, args=[job_id], queue=target, countdown=countdown)


def dispatch_training_task(
    job_id: str, countdown: float | None = None, memory_bytes: int | None = None, queue: str | None = None
) -> None:
    """Send a job's message; if the broker is down, the job stays waiting and a worker's reaper
    sends it again later (``redispatch_after_seconds``), so submitting never fails on it."""
    try:
        send_training_task(job_id, countdown, memory_bytes, queue)
    except Exception as exc:  # kombu's OperationalError, a refused connection, a DNS failure
        log.warning("job %s: the queue broker is unreachable (%s); it will be sent again later", job_id, exc)


def short_queue() -> str:
    """The short lane's queue: merges, webhook deliveries and batch compares."""
    return f"{get_settings().queue}.short"


def send_short_task(name: str, object_id: str, countdown: float | None = None) -> bool:
    """Queue short-lane task ``name`` for ``object_id`` (after its row is committed). False when the
    broker is unreachable: the short-lane worker's sweep finds the object waiting and sends it."""
    settings = get_settings()
    try:
        producer = _producer(settings.redis_url or str(settings.broker_dir))
        producer.send_task(name, args=[object_id], queue=short_queue(), countdown=countdown)
    except Exception as exc:  # kombu's OperationalError, a refused connection, a DNS failure
        log.warning(
            "%s %s: the queue broker is unreachable (%s); it will be sent again later", name, object_id, exc
        )
        return False
    return True


def send_merge_task(merge_id: str) -> None:
    """Ask a worker to run merge ``merge_id`` (call only after it is committed)."""
    send_short_task(MERGE_TASK, merge_id)
