"""The Celery application the worker process runs (`celery -A worker.celery_app worker`)."""

import logging
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    celeryd_after_setup,
    setup_logging,
    worker_ready,
    worker_shutdown,
)

from app.core.config import get_settings
from app.core.logs import configure_logging, guard
from app.core.queue import celery_config

celery = Celery("tunedeck", include=["worker.tasks"])
celery.conf.update(celery_config(get_settings()))


def _json_logging(**_: Any) -> None:
    """TUNEDECK_LOG_FORMAT=json: tunedeck's logging replaces Celery's, and stray writes to
    stdout/stderr become log records too, so every line the worker writes is JSON."""
    configure_logging()
    celery.log.redirect_stdouts("WARNING")


def _guard_text_logging(logger: logging.Logger, **_: Any) -> None:
    """Text logs keep Celery's format, with the secret-redacting filter on its handlers."""
    guard(logger)


if get_settings().log_format == "json":
    configure_logging()  # now, so that what Celery warns before it sets up logging is JSON too
    setup_logging.connect(_json_logging, weak=False)
else:
    after_setup_logger.connect(_guard_text_logging, weak=False)
    after_setup_task_logger.connect(_guard_text_logging, weak=False)


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


@celeryd_after_setup.connect
def _consume_memory_tiers(sender: object, instance: Any, **_: object) -> None:
    """Besides the default queue, consume every memory tier up to this worker's memory, so it
    wakes for the jobs it can hold and not for bigger ones (app/queue.py)."""
    from app.core.queue import worker_queues
    from worker.beacon import advertised_memory_gib

    for name in worker_queues(advertised_memory_gib()):
        instance.app.amqp.queues.select_add(name)


@worker_ready.connect
def _warm_up(**_: object) -> None:
    """Import the training stack (transformers, peft, trl: tens of seconds on a busy machine) in
    the background once ready, so the first job this worker is woken for starts at once."""
    import importlib
    import threading

    threading.Thread(
        target=importlib.import_module, args=("worker.training.runner",), name="warm-up", daemon=True
    ).start()
