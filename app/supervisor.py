"""`tunedeck run`'s children kept alive: a child that dies is started again with backoff.

One child crashing never stops the others. A child that keeps dying (``restart_limit`` exits
within ``restart_window`` seconds) is given up on, alone, and the rest run on. Every exit,
restart and give-up is logged and recorded in the ``processes`` table, which the overview's
workers panel shows.
"""

import logging
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

log = logging.getLogger("tunedeck")

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0  # a child that ran this long starts its backoff afresh


class ChildState(StrEnum):
    running = "running"
    restarting = "restarting"  # exited; started again after its backoff
    given_up = "given_up"  # crashed too often; not started again
    stopped = "stopped"  # tunedeck run is shutting down


def describe_exit(returncode: int) -> str:
    """'killed by SIGKILL' or 'exited with status 3'."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


@dataclass
class Child:
    """One supervised process: how to start it, and what happened to it so far."""

    name: str
    command: Sequence[str]
    env: dict[str, str] | None = None
    on_exit: Callable[["Child", int], None] | None = None  # clean up after a death (e.g. hand back jobs)
    proc: subprocess.Popen[bytes] | None = None
    state: ChildState = ChildState.stopped
    restarts: int = 0
    last_exit: str | None = None
    started_at: float = 0.0
    restart_at: float = 0.0
    backoff: float = FIRST_BACKOFF_S
    exits: deque[float] = field(default_factory=deque)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


Report = Callable[[Child], None]


class Supervisor:
    """Start every child, restart the ones that die, give up on one that keeps dying."""

    def __init__(
        self,
        children: Sequence[Child],
        *,
        restart_limit: int = 5,
        restart_window: float = 300.0,
        report: Report | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = {child.name: child for child in children}
        self.restart_limit = restart_limit
        self.restart_window = restart_window
        self.report = report or (lambda child: None)
        self.clock = clock

    @property
    def all_given_up(self) -> bool:
        return all(child.state == ChildState.given_up for child in self.children.values())

    def start(self) -> None:
        for child in self.children.values():
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        child.proc = subprocess.Popen(list(child.command), env=child.env)
        child.state, child.started_at = ChildState.running, self.clock()
        self._report(child)

    def _report(self, child: Child) -> None:
        try:
            self.report(child)
        except Exception:  # a busy database must not stop the supervision itself
            log.exception("could not record the state of %s", child.name)

    def poll(self) -> None:
        """Notice deaths and start the children whose backoff is over; call it a few times a second."""
        now = self.clock()
        for child in self.children.values():
            if child.state == ChildState.running and child.proc is not None:
                code = child.proc.poll()
                if code is not None:
                    self._died(child, code, now)
            elif child.state == ChildState.restarting and now >= child.restart_at:
                child.restarts += 1
                log.warning("starting %s again (restart %d)", child.name, child.restarts)
                self._spawn(child)

    def _died(self, child: Child, code: int, now: float) -> None:
        child.last_exit = describe_exit(code)
        if child.on_exit is not None:
            try:
                child.on_exit(child, code)
            except Exception:
                log.exception("clean-up after %s exited failed", child.name)
        if now - child.started_at >= STABLE_AFTER_S:
            child.backoff = FIRST_BACKOFF_S
        child.exits.append(now)
        while child.exits and child.exits[0] < now - self.restart_window:
            child.exits.popleft()
        if len(child.exits) >= self.restart_limit:
            child.state = ChildState.given_up
            log.error(
                "%s %s; it exited %d times within %.0f s, so it is not started again "
                "(the rest of tunedeck keeps running; restart tunedeck run once it is fixed)",
                child.name,
                child.last_exit,
                len(child.exits),
                self.restart_window,
            )
        else:
            child.state, child.restart_at = ChildState.restarting, now + child.backoff
            log.error(
                "%s %s unexpectedly; starting it again in %.0f s", child.name, child.last_exit, child.backoff
            )
            child.backoff = min(child.backoff * 2, MAX_BACKOFF_S)
        self._report(child)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every child still running, SIGKILL what has not stopped after ``grace`` seconds."""
        running = [c for c in self.children.values() if c.proc is not None and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            child.proc.send_signal(signal.SIGTERM)
        deadline = self.clock() + grace
        for child in running:
            assert child.proc is not None
            try:
                child.proc.wait(timeout=max(0.1, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        for child in self.children.values():
            child.state = ChildState.stopped
            self._report(child)
