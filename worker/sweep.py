"""A short-lane worker's thread that sends again the tasks of work whose task never came (the
broker was down or lost the message) or whose worker died: batch compares, eval runs."""

import logging
import threading
from collections.abc import Callable

from app.core.queue import send_short_task

log = logging.getLogger(__name__)


class Sweep:
    """Every ``interval`` seconds, ``lost()`` names what to queue again as ``task``."""

    def __init__(self, what: str, lost: Callable[[], list[str]], task: str, interval: float) -> None:
        self.what, self.lost, self.task, self.interval = what, lost, task, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{what.replace(' ', '-')}-sweep", daemon=True)

    def start(self) -> "Sweep":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                for object_id in self.lost():
                    log.info("%s %s lost its task or its worker; queued again", self.what, object_id)
                    send_short_task(self.task, object_id)
            except Exception:  # a busy or unreachable database: next round
                log.exception("could not sweep for lost work (%s)", self.what)
