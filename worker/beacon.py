"""A background thread that tells the database this worker is alive and what it trains on."""

import logging
import os
import threading
from functools import lru_cache

import torch

from app.core.config import get_settings
from app.core.presence import BEAT_SECONDS, announce, sign_off
from app.core.queue import short_queue

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def describe_device() -> tuple[str, int, float | None]:
    """(device name, count, memory per device in GiB): the GPUs, or the CPU and its RAM."""
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        props = torch.cuda.get_device_properties(0)
        return props.name, count, props.total_memory / 2**30
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"cpu ({os.cpu_count()} cores)", 1, ram


def advertised_memory_gib() -> float | None:
    """The memory per device this worker takes jobs up to: TUNEDECK_WORKER_MEMORY_GIB when set (to
    declare it, e.g. for a CPU worker or one that shares its GPU), else what the device reports."""
    return get_settings().worker_memory_gib or describe_device()[2]


class Beacon:
    def __init__(self, name: str) -> None:
        self.name = name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-beacon", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            sign_off(self.name)
        except Exception:
            log.exception("could not sign off worker %s", self.name)

    def _run(self) -> None:
        device, count, _ = describe_device()
        memory = advertised_memory_gib()
        while True:
            try:
                announce(
                    self.name,
                    queue=get_settings().queue if "train" in get_settings().worker_lanes else short_queue(),
                    device=device,
                    device_count=count,
                    device_memory_gib=memory,
                )
            except Exception:  # a busy or unreachable database: try again next beat
                log.exception("worker %s: could not announce itself", self.name)
            if self._stop.wait(BEAT_SECONDS):
                return
