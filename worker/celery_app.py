"""The Celery application the worker process runs (`celery -A worker.celery_app worker`)."""

from celery import Celery
from celery.signals import worker_ready

from app.config import get_settings
from app.queue import celery_config

celery = Celery("tunedeck", include=["worker.tasks"])
celery.conf.update(celery_config(get_settings()))


@worker_ready.connect
def _start_reaper(**_: object) -> None:
    """Every worker re-queues jobs whose worker died (expired leases) while it runs."""
    from worker.lease import Reaper

    Reaper().start()
