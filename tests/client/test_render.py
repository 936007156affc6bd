"""The CLI client's pieces without a server: the progress line, tables, SSE parsing, --hp,
the display's two modes, and reconnecting from the last cursor."""

import io
from typing import Any

import pytest

from app.client.api import Unreachable
from app.client.common import UsageProblem, parse_hyperparameters
from app.client.render import ProgressView, bar, duration, progress_line, table
from app.client.sse import SseMessage, parse_sse
from app.client.watch import Display, watch


def test_bar_fills_in_proportion_and_is_full_only_at_the_end() -> None:
    assert bar(0.0, width=10) == "[..........]"
    assert bar(0.3, width=10) == "[###.......]"
    assert bar(0.999, width=10) == "[#########.]"
    assert bar(1.0, width=10) == "[##########]"
    assert bar(1.7, width=10) == "[##########]" and bar(-1, width=10) == "[..........]"


def test_progress_line_shows_step_percent_losses_and_eta() -> None:
    running = ProgressView("running", 12, 40, 0.3, train_loss=1.23456, valid_loss=None, eta_seconds=65)
    assert progress_line(running) == "[######..............] step 12/40 30%  train 1.2346  ETA 1m05s"
    done = ProgressView("succeeded", 40, 40, 1.0, train_loss=0.5, valid_loss=0.75)
    assert (
        progress_line(done) == "[####################] step 40/40 100%  train 0.5000  valid 0.7500  succeeded"
    )
    assert progress_line(ProgressView("queued", 0, None, 0.0)) == "[....................] step 0/? 0%  queued"


def test_durations_and_tables() -> None:
    assert [duration(s) for s in (0, 42, 185, 3725)] == ["0s", "42s", "3m05s", "1h02m"]
    assert table(["ID", "STATUS"], [["ftjob-1", "running"], ["x", "-"]]).splitlines() == [
        "ID       STATUS",
        "ftjob-1  running",
        "x        -",
    ]


def test_sse_parsing_keeps_the_last_id_and_skips_keepalives() -> None:
    lines = ["retry: 2000", "", "id: 3-1", "event: metrics", 'data: [{"k": "train_loss"}]', ""]
    lines += [": keepalive", "", "event: end", 'data: {"status": "succeeded"}', ""]
    assert list(parse_sse(lines)) == [
        SseMessage("metrics", [{"k": "train_loss"}], "3-1"),
        SseMessage("end", {"status": "succeeded"}, "3-1"),
    ]


def test_hyperparameters_are_read_as_json_or_kept_as_text() -> None:
    pairs = [
        "n_epochs=3",
        "learning_rate=2e-4",
        "gradient_checkpointing=false",
        "target_modules=q_proj,v_proj",
    ]
    assert parse_hyperparameters(pairs) == {
        "n_epochs": 3,
        "learning_rate": 2e-4,
        "gradient_checkpointing": False,
        "target_modules": "q_proj,v_proj",
    }
    with pytest.raises(UsageProblem, match="key=value"):
        parse_hyperparameters(["n_epochs"])


def test_display_redraws_in_place_on_a_terminal_and_prints_lines_otherwise() -> None:
    tty, piped = io.StringIO(), io.StringIO()
    for out, is_tty in ((tty, True), (piped, False)):
        display = Display(out, is_tty)
        display.update("step 1")
        display.update("step 1")
        display.note("warning: something")
        display.update("step 2")
        display.close()
    assert piped.getvalue() == "step 1\nwarning: something\nstep 2\n"
    assert tty.getvalue().count("\r\033[K") == 5 and tty.getvalue().endswith("step 2\n")
    assert "\r\033[Kwarning: something\n\r\033[Kstep 1" in tty.getvalue()


def _status(step: int, status: str = "running") -> SseMessage:
    job: dict[str, Any] = {
        "status": status,
        "progress": {"step": step, "total_steps": 4, "fraction": step / 4, "eta": None},
        "train_loss": 1.0 / (step + 1),
        "valid_loss": None,
        "error": None,
        "fine_tuned_model": None,
    }
    return SseMessage("status", job, f"{step}-0")


class DroppingServer:
    """Serves steps 1–2, drops the connection, then serves the rest from the cursor it is given."""

    url = "http://test"

    def __init__(self) -> None:
        self.cursors: list[str | None] = []

    def stream_job(self, job_id: str, last_event_id: str | None = None) -> Any:
        self.cursors.append(last_event_id)
        if len(self.cursors) == 1:
            yield _status(1)
            yield _status(2)
            raise Unreachable(self.url, "connection reset")
        yield _status(4, "succeeded")
        yield SseMessage("end", {"status": "succeeded"}, "4-0")


def test_watch_reconnects_with_the_last_event_id() -> None:
    server, out = DroppingServer(), io.StringIO()
    state = watch(server, "ftjob-x", Display(out, tty=False), sleep=lambda s: None)  # type: ignore[arg-type]
    assert server.cursors == [None, "2-0"]
    assert state.status == "succeeded" and state.step == 4
    lines = out.getvalue().splitlines()
    assert "connection lost (connection reset); reconnecting…" in lines
    assert lines[-1].startswith("[####################] step 4/4 100%  train 0.2000")


class NoServer:
    url = "http://test"

    def stream_job(self, job_id: str, last_event_id: str | None = None) -> Any:
        raise Unreachable(self.url, "connection refused")
        yield


def test_watch_gives_up_at_once_when_it_never_got_through() -> None:
    with pytest.raises(Unreachable, match="connection refused"):
        watch(NoServer(), "ftjob-x", Display(io.StringIO(), tty=False), sleep=lambda s: None)  # type: ignore[arg-type]
