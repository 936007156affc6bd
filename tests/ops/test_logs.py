"""TUNEDECK_LOG_FORMAT=json: one JSON object a line, with the job and request ids; secrets
masked in either format."""

import io
import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from app.core.logs import AddContext, JsonFormatter, RedactSecrets, job_context, redact
from app.http.context import RequestContext
from tests.e2e.support import TUNEDECK, stop


def _capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(AddContext())
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger(f"tunedeck.test.{id(out)}")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.INFO
    return logger, out


def test_secrets_are_masked_in_messages_arguments_and_tracebacks() -> None:
    key = "td-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-xy"
    logger, out = _capture(logging.Formatter("%(message)s"))
    logger.info(
        "calling with %s", {"Authorization": f"Bearer {key}", "Cookie": "tunedeck_session=abc123; x=1"}
    )
    logger.warning("hf token hf_abcdefghijklmnopqrstuvwxyz and bearer eyJhbGciOi.payload.sig")
    try:
        raise RuntimeError(f"the server refused key {key}")
    except RuntimeError:
        logger.exception("request failed")
    text = out.getvalue()
    assert key not in text and "AbCdEfGh" not in text and "abc123" not in text
    assert "hf_abcdefghij" not in text and "eyJhbGciOi" not in text
    assert "Bearer ***" in text and "td-***" in text and "tunedeck_session=***" in text
    assert redact("ftjob-3f9c2a7b1d0e4c55a6b8e1f2") == "ftjob-3f9c2a7b1d0e4c55a6b8e1f2"  # ids stay


def test_json_lines_carry_the_job_id_and_the_request_id() -> None:
    logger, out = _capture(JsonFormatter())
    with job_context("ftjob-abc123"):
        logger.info("step %d done", 3)
    logger.info("outside")

    def endpoint(request: Request) -> PlainTextResponse:
        logger.info("handling")
        return PlainTextResponse("ok")

    app = RequestContext(Starlette(routes=[Route("/api/v1/fine_tuning/jobs/{job_id}/events", endpoint)]))
    answer = TestClient(app).get(
        "/api/v1/fine_tuning/jobs/ftjob-def456/events", headers={"X-Request-ID": "req-1"}
    )
    assert answer.headers["x-request-id"] == "req-1"
    first, second, third = (json.loads(line) for line in out.getvalue().splitlines())
    assert (
        first["message"] == "step 3 done" and first["job_id"] == "ftjob-abc123" and first["level"] == "INFO"
    )
    assert set(first) == {"ts", "level", "logger", "message", "job_id"}
    assert "job_id" not in second
    assert third["job_id"] == "ftjob-def456" and third["request_id"] == "req-1"


def _read_lines(stream: io.BufferedReader, into: list[str]) -> None:
    for raw in iter(stream.readline, b""):
        into.append(raw.decode())


def _wait_for(lines: list[str], predicate: Callable[[str], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(predicate(line) for line in list(lines)):
            return
        time.sleep(0.2)
    raise AssertionError("no such log line:\n" + "".join(lines))


def _run_logging(command: list[str], ready: str) -> list[dict[str, object]]:
    """Start ``command`` with JSON logs, wait for a line containing ``ready``, stop it; every
    line it wrote to stderr, parsed (a line that is not JSON fails the test)."""
    env = {**os.environ, "TUNEDECK_LOG_FORMAT": "json"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=_read_lines, args=(proc.stderr, lines), daemon=True)
    reader.start()
    try:
        _wait_for(lines, lambda line: ready in line, timeout=90)
    finally:
        stop(proc)
        reader.join(timeout=5)
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_tunedeck_worker_logs_json(configured: Path) -> None:
    """A real `tunedeck worker`: Celery's own lines (and its warnings) are JSON too."""
    records = _run_logging([TUNEDECK, "worker", "--name", "json-test@host"], ready="json-test@host ready")
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert any(str(r["logger"]).startswith("celery") for r in records)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_job_run_by_a_worker_logs_its_id(configured: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's lines carry ``job_id`` (run in-process: the same code a worker's task calls)."""
    from app.core.db import session_scope
    from app.core.ids import new_id
    from app.core.tables import Job
    from tests.factories import run_job

    with session_scope() as session:
        job = Job(id=new_id("ftjob"), model="no-such-model", training_file="file-x")
        session.add(job)
    logger, out = _capture(JsonFormatter())
    runner_log = logging.getLogger("worker.training.runner")
    monkeypatch.setattr(runner_log, "handlers", logger.handlers)
    monkeypatch.setattr(runner_log, "level", logging.INFO)
    assert run_job(job.id, "json-test@host") == "failed"  # the model is not registered
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    started = [r for r in records if "attempt 1 started" in r["message"]]
    assert started and started[0]["job_id"] == job.id


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_tunedeck_web_logs_json(configured: Path) -> None:
    """uvicorn's own lines go through the same handler (`--log-config`)."""
    from tests.e2e.support import free_port

    records = _run_logging(
        [TUNEDECK, "web", "--port", str(free_port())], ready="Application startup complete"
    )
    assert any(r["logger"] == "uvicorn.error" and r["level"] == "INFO" for r in records)
