"""Requests for one base model take turns in the order they arrived."""

import threading
import time

from worker.serving.engine import FairLock


def test_turns_are_granted_in_arrival_order() -> None:
    lock = FairLock()
    order: list[int] = []
    release = threading.Event()

    def holder() -> None:
        with lock.hold():
            release.wait(5)

    def waiter(i: int) -> None:
        with lock.hold():
            order.append(i)

    first = threading.Thread(target=holder)
    first.start()
    time.sleep(0.05)
    waiters = []
    for i in range(20):
        thread = threading.Thread(target=waiter, args=(i,))
        thread.start()
        waiters.append(thread)
        while lock.queued < i + 1:  # each one is in line before the next arrives
            time.sleep(0.001)
    release.set()
    for thread in (first, *waiters):
        thread.join(5)
    assert order == list(range(20))
