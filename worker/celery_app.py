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


def lanes() -> set[str]:
    """What this worker takes (TUNEDECK_WORKER_LANES): train, short, or both."""
    return set(get_settings().worker_lanes.split(","))


_beacon = None
_sweeps: list[Any] = []


@worker_ready.connect
def _start_background(sender: object = None, **_: object) -> None:
    """Every worker says that it is online and which device it has (the overview lists it). A
    training worker re-queues jobs whose worker died (expired leases); a short-lane worker sends
    what the queue lost: webhook deliveries and batch compares whose task never came."""
    global _beacon
    from worker.beacon import Beacon

    if "train" in lanes():
        from worker.heartbeat import Reaper

        Reaper().start()
    if "short" in lanes():
        from worker.batches import batch_sweep
        from worker.deliveries import OutboxSweep
        from worker.evals.run import eval_sweep

        _sweeps.extend([OutboxSweep().start(), batch_sweep().start(), eval_sweep().start()])
    _beacon = Beacon(str(getattr(sender, "hostname", None) or "worker"))
    _beacon.start()


@worker_shutdown.connect
def _sign_off(**_: object) -> None:
    if _beacon is not None:
        _beacon.stop()
    for sweep in _sweeps:
        sweep.stop()


@celeryd_after_setup.connect
def _consume_lanes(sender: object, instance: Any, **_: object) -> None:
    """The queues of this worker's lanes: for training, the default queue and every memory tier
    up to this worker's memory, so it wakes for the jobs it can hold and not for bigger ones
    (app/core/queue.py); for short work, the short queue."""
    from app.core.queue import short_queue, worker_queues
    from worker.beacon import advertised_memory_gib

    wanted = worker_queues(advertised_memory_gib()) if "train" in lanes() else []
    wanted += [short_queue()] if "short" in lanes() else []
    for name in wanted:
        instance.app.amqp.queues.select_add(name)


@worker_ready.connect
def _warm_up(**_: object) -> None:
    """Import the training stack (transformers, peft, trl: tens of seconds on a busy machine) in
    the background once ready, so the first job a training worker is woken for starts at once."""
    if "train" not in lanes():
        return
    import importlib
    import threading

    threading.Thread(
        target=importlib.import_module, args=("worker.training.runner",), name="warm-up", daemon=True
    ).start()
