"""The worker's side of leases: a heartbeat thread per running attempt, and a reaper thread.

The rules (fencing tokens, backoff, bounded attempts) live in app.core.leases.
"""

import logging
import threading

from app.core.config import get_settings
from app.core.leases import reap_expired, renew

log = logging.getLogger(__name__)


class Heartbeat:
    """A background thread that renews the lease every third of its length until stopped."""

    def __init__(self, job_id: str, fence: int) -> None:
        self.job_id, self.fence = job_id, fence
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        interval = get_settings().lease_seconds / 3
        while not self._stop.wait(interval):
            try:
                if not renew(self.job_id, self.fence):
                    log.warning("job %s: attempt %s was fenced off; stopping", self.job_id, self.fence)
                    self.lost.set()
                    return
            except Exception:  # a busy or briefly unreachable database: try again next beat
                log.exception("job %s: heartbeat failed", self.job_id)


class Reaper:
    """Scans for expired leases every half lease, in the background of a worker process."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while True:
            try:
                for job_id in reap_expired():
                    log.warning("job %s: lease expired; re-queued or failed", job_id)
            except Exception:
                log.exception("lease reaper failed")
            if self._stop.wait(get_settings().lease_seconds / 2):
                return
