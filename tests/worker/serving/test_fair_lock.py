"""Requests for one base model take turns in the order they arrived, also a token at a time."""

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


def test_a_holder_hands_its_turn_to_those_waiting_and_gets_the_next_one() -> None:
    lock = FairLock()
    steps: list[str] = []

    def reply(name: str, tokens: int) -> None:
        with lock.hold():
            for _ in range(tokens):
                steps.append(name)
                lock.take_turns()

    with lock.hold():  # both queue up behind a first holder
        threads = [threading.Thread(target=reply, args=(n, 3)) for n in "ab"]
        for i, thread in enumerate(threads):
            thread.start()
            while lock.queued < i + 1:
                time.sleep(0.001)
        assert lock.take_turns() is True  # the first holder steps aside mid-way:
        steps.append("first")
    for thread in threads:
        thread.join(5)
    # ...a and b each take one step, then it is the first holder's turn again (round robin)
    assert steps == ["a", "b", "first", "a", "b", "a", "b"]
    with lock.hold():
        assert lock.take_turns() is False  # nobody waits: no hand-over
