"""`tunedeck jobs watch`: follow a job's event stream and draw its progress in the terminal.

The stream's message ids are cursors (``<metric id>-<event id>``): after a dropped connection
we reconnect with Last-Event-ID and miss nothing, as the dashboard's EventSource does.
"""

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from app.client.api import Client, Unreachable
from app.client.render import ProgressView, progress_line
from app.client.sse import SseMessage

RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)  # then every 5 s
GIVE_UP_AFTER = 300.0  # seconds without a single message before watch stops trying


@dataclass
class JobState:
    """What the watcher knows about the job so far, from status messages and metric points."""

    job_id: str
    status: str = "queued"
    step: int = 0
    total_steps: int | None = None
    fraction: float = 0.0
    eta: int | None = None
    train_loss: float | None = None
    valid_loss: float | None = None
    error: str | None = None
    fine_tuned_model: str | None = None

    def apply_status(self, job: dict[str, Any]) -> None:
        """A ``status`` message carries the whole job: progress, latest losses, error."""
        progress = job["progress"]
        self.status = job["status"]
        self.step, self.total_steps = progress["step"], progress["total_steps"]
        self.fraction, self.eta = progress["fraction"], progress["eta"]
        self.train_loss = job["train_loss"] if job["train_loss"] is not None else self.train_loss
        self.valid_loss = job["valid_loss"] if job["valid_loss"] is not None else self.valid_loss
        self.error = job["error"]["message"] if job["error"] else None
        self.fine_tuned_model = job["fine_tuned_model"]

    def apply_metrics(self, points: list[dict[str, Any]]) -> None:
        """Metric points arrive between status messages; the newest loss of each kind wins."""
        for point in points:
            if point["k"] == "train_loss":
                self.train_loss = point["v"]
            elif point["k"] == "valid_loss":
                self.valid_loss = point["v"]
            self.step = max(self.step, point["s"])
        if self.total_steps:
            self.fraction = max(self.fraction, min(1.0, self.step / self.total_steps))

    def view(self, now: float) -> ProgressView:
        eta = None if self.eta is None else max(0.0, self.eta - now)
        return ProgressView(
            self.status, self.step, self.total_steps, self.fraction, self.train_loss, self.valid_loss, eta
        )


class Display:
    """The progress line: redrawn in place on a terminal, one line per change when piped to a log."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self.line = ""

    def update(self, line: str) -> None:
        if self.tty:
            width = shutil.get_terminal_size().columns - 1  # a wrapped line cannot be redrawn with \r
            self.out.write("\r\033[K" + line[:width])
        elif line != self.line:
            self.out.write(line + "\n")
        self.line = line
        self.out.flush()

    def note(self, text: str) -> None:
        """A line above the progress line (an event, a reconnect), which is then drawn again."""
        if self.tty:
            self.out.write("\r\033[K" + text + "\n")
            self.line, line = "", self.line
            if line:
                self.update(line)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        """End the redrawn line so that what follows starts on its own (safe to call twice)."""
        if self.tty and self.line:
            self.out.write("\n")
            self.out.flush()
            self.line = ""


def event_line(event: dict[str, Any]) -> str:
    """``12:01:07 warning: No validation rows…`` (info events without the level)."""
    clock = datetime.fromtimestamp(event["created_at"]).strftime("%H:%M:%S")
    level = "" if event["level"] == "info" else f"{event['level']}: "
    return f"{clock} {level}{event['message']}"


def _apply(state: JobState, message: SseMessage, display: Display) -> bool:
    """Fold one message into the state; True on ``end``."""
    if message.event == "status":
        state.apply_status(message.data)
    elif message.event == "metrics":
        state.apply_metrics(message.data)
    elif message.event == "events":
        for event in message.data:
            display.note(event_line(event))
    elif message.event == "end":
        state.status = message.data["status"]
        return True
    return False


def watch(
    client: Client,
    job_id: str,
    display: Display,
    *,
    sleep: Callable[[float], None] = time.sleep,
    give_up_after: float = GIVE_UP_AFTER,
) -> JobState:
    """Follow the job until it ends, reconnecting from the last cursor whenever the stream drops.

    Raises Unreachable when the first connection fails or nothing has come for ``give_up_after``
    seconds, ApiError when the server refuses (a wrong id, a revoked key): retrying would not
    help with those.
    """
    state, cursor, failures = JobState(job_id), None, 0
    quiet_since = time.monotonic()
    while True:
        try:
            for message in client.stream_job(job_id, cursor):
                cursor, failures, quiet_since = message.id or cursor, 0, time.monotonic()
                ended = _apply(state, message, display)
                display.update(progress_line(state.view(time.time())))
                if ended:
                    return state
            lost = Unreachable(client.url, "the stream closed before the job ended")
        except Unreachable as exc:
            lost = exc
        if cursor is None or time.monotonic() - quiet_since > give_up_after:
            raise lost  # never got through (wrong URL, server down), or gone for too long
        if failures == 0:
            display.note(f"connection lost ({lost.reason}); reconnecting…")
        sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])
        failures += 1
