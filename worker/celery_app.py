"""The Celery application the worker process runs (`celery -A worker.celery_app worker`)."""

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from app.config import get_settings
from app.queue import celery_config

celery = Celery("tunedeck", include=["worker.tasks"])
celery.conf.update(celery_config(get_settings()))


_beacon = None


@worker_ready.connect
def _start_reaper(sender: object = None, **_: object) -> None:
    """Every worker re-queues jobs whose worker died (expired leases) while it runs, and says
    that it is online and which device it has (the overview page lists it)."""
    global _beacon
    from worker.beacon import Beacon
    from worker.lease import Reaper

    Reaper().start()
    _beacon = Beacon(str(getattr(sender, "hostname", None) or "worker"))
    _beacon.start()
    _start_webhook_sender()


_webhooks = None


def _start_webhook_sender() -> None:
    """Workers send the webhook outbox too, so deliveries go out even when no web app runs."""
    global _webhooks
    from app.webhooks.delivery import start_webhook_sender

    _webhooks = start_webhook_sender()


@worker_shutdown.connect
def _sign_off(**_: object) -> None:
    if _beacon is not None:
        _beacon.stop()
    if _webhooks is not None:
        _webhooks.stop()
