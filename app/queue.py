"""The Celery producer. The web side sends tasks by name and never imports ``worker``."""

import logging
from functools import lru_cache
from typing import Any

from celery import Celery

from app.config import Settings, get_settings

TRAIN_TASK = "tunedeck.train"
MERGE_TASK = "tunedeck.merge"
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


def send_training_task(job_id: str, countdown: float | None = None) -> None:
    """Ask a worker to run job ``job_id`` (call only after the job row is committed)."""
    settings = get_settings()
    producer = _producer(settings.redis_url or str(settings.broker_dir))
    producer.send_task(TRAIN_TASK, args=[job_id], queue=settings.queue, countdown=countdown)


def dispatch_training_task(job_id: str, countdown: float | None = None) -> None:
    """Send a job's message; if the broker is down, the job stays waiting and a worker's reaper
    sends it again later (``redispatch_after_seconds``), so submitting never fails on it."""
    try:
        send_training_task(job_id, countdown)
    except Exception as exc:  # kombu's OperationalError, a refused connection, a DNS failure
        log.warning("job %s: the queue broker is unreachable (%s); it will be sent again later", job_id, exc)


def send_merge_task(merge_id: str) -> None:
    """Ask a worker to run merge ``merge_id`` (call only after it is committed)."""
    settings = get_settings()
    producer = _producer(settings.redis_url or str(settings.broker_dir))
    producer.send_task(MERGE_TASK, args=[merge_id], queue=settings.queue)
