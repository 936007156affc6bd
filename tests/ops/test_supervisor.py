"""`tunedeck run`'s supervisor with real child processes: a child that dies is started again
after a backoff, one that keeps dying is given up on alone, the others never notice."""

import signal
import sys
import time

from app.supervisor import Child, ChildState, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
CRASHER = [sys.executable, "-c", "import sys; sys.exit(3)"]


def _poll_until(supervisor: Supervisor, done: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, {c.name: c.state for c in supervisor.children.values()}
        supervisor.poll()
        time.sleep(0.05)


def test_a_killed_child_is_started_again_and_one_that_keeps_crashing_is_given_up_alone() -> None:
    reports: list[tuple[str, ChildState, int]] = []
    exits: list[tuple[str, int]] = []
    steady = Child("steady", SLEEPER, on_exit=lambda child, code: exits.append((child.name, code)))
    crashing = Child("crashing", CRASHER)
    supervisor = Supervisor(
        [steady, crashing],
        restart_limit=3,
        restart_window=60,
        report=lambda c: reports.append((c.name, c.state, c.restarts)),
    )
    supervisor.start()
    try:
        first_pid = steady.pid
        assert first_pid is not None
        started = time.monotonic()
        _poll_until(supervisor, lambda: crashing.state == ChildState.given_up)
        # backoff 1 s then 2 s between the three exits; the steady child was never touched
        assert time.monotonic() - started >= 3.0
        assert crashing.restarts == 2 and crashing.last_exit == "exited with status 3"
        assert steady.pid == first_pid and steady.state == ChildState.running
        assert ("crashing", ChildState.given_up, 2) in reports

        assert steady.proc is not None
        steady.proc.send_signal(signal.SIGKILL)
        _poll_until(supervisor, lambda: steady.state == ChildState.restarting)
        assert steady.last_exit == "killed by SIGKILL" and exits == [("steady", -9)]
        _poll_until(supervisor, lambda: steady.state == ChildState.running)
        assert steady.pid not in (None, first_pid) and steady.restarts == 1
        assert crashing.state == ChildState.given_up and crashing.pid is None  # still given up
        assert not supervisor.all_given_up
    finally:
        supervisor.stop(grace=5)
    assert steady.state == ChildState.stopped and steady.proc is not None and steady.proc.poll() is not None


def test_a_child_that_ran_a_while_starts_its_backoff_afresh() -> None:
    clock = [0.0]
    child = Child("worker", CRASHER)
    supervisor = Supervisor([child], restart_limit=10, restart_window=30, clock=lambda: clock[0])
    supervisor.start()
    try:
        for expected in (1.0, 2.0, 4.0):
            assert child.proc is not None
            child.proc.wait()
            supervisor.poll()
            assert child.state == ChildState.restarting and child.restart_at == clock[0] + expected
            clock[0] = child.restart_at
            supervisor.poll()  # started again
        clock[0] += 120  # it ran for two minutes before dying: back to a 1 s wait, window emptied
        assert child.proc is not None
        child.proc.wait()
        supervisor.poll()
        assert child.restart_at == clock[0] + 1.0 and len(child.exits) == 1
    finally:
        supervisor.stop(grace=5)
