"""/metrics on the web app: job counts, queue, throughput and workers computed from the database
at scrape time; requests and live streams counted in-process; and who may read it."""

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.ids import new_id
from app.core.tables import Job, JobStatus, WorkerRecord
from app.core.tables.job import Metric
from app.core.timeutil import utcnow
from tests.e2e.support import free_port
from tests.ops.conftest import LOOPBACK, samples, value


def _job(status: JobStatus, **fields: object) -> Job:
    return Job(id=new_id("ftjob"), model="tiny-llama", training_file="file-x", status=status, **fields)


def test_metrics_count_jobs_queue_throughput_and_workers(local: TestClient) -> None:
    now = utcnow()
    with session_scope() as session:
        session.add_all(
            [
                _job(JobStatus.queued, created_at=now - timedelta(seconds=120)),
                _job(JobStatus.queued),
                _job(
                    JobStatus.succeeded,
                    created_at=now - timedelta(seconds=100),
                    started_at=now - timedelta(seconds=50),
                ),
                _job(JobStatus.failed),
            ]
        )
        running = _job(JobStatus.running, worker="gpu0@host", started_at=now, created_at=now)
        session.add(running)
        session.flush()
        for step, seconds in ((3, 0.5), (4, 0.25)):
            session.add(Metric(job_id=running.id, key="step_time", step=step, value=seconds))
        session.add(Metric(job_id=running.id, key="tokens_per_second", step=4, value=1000.0))
        session.add(
            WorkerRecord(name="gpu0@host", host="host", pid=1, device="GPU", queue="q", device_memory_gib=80)
        )

    answer = local.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert value(text, "tunedeck_database_up") == 1
    counts = {s.value: value(text, "tunedeck_jobs", status=s.value) for s in JobStatus}
    assert counts == {
        "validating_files": 0,
        "queued": 2,
        "running": 1,
        "retrying": 0,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 0,
    }
    assert value(text, "tunedeck_queue_length") == 2
    assert 119 <= value(text, "tunedeck_queue_oldest_wait_seconds") < 200
    # the succeeded job waited 50 s, the running one 0 s; both started within the hour
    assert value(text, "tunedeck_queue_wait_seconds_gcount") == 2
    assert value(text, "tunedeck_queue_wait_seconds_bucket", le="30.0") == 1
    assert value(text, "tunedeck_queue_wait_seconds_bucket", le="60.0") == 2
    assert value(text, "tunedeck_training_steps_per_second", worker="gpu0@host") == 4.0  # latest step
    assert value(text, "tunedeck_training_tokens_per_second", worker="gpu0@host") == 1000.0
    assert value(text, "tunedeck_workers_online") == 1
    assert value(text, "tunedeck_worker_heartbeat_age_seconds", worker="gpu0@host") < 30
    assert value(text, "tunedeck_worker_device_memory_bytes", worker="gpu0@host") == 80 * 2**30
    assert running.id not in text  # no job ids (or usernames) in labels


def test_requests_are_counted_by_route_template(local: TestClient, admin_key: str) -> None:
    route = {"route": "/api/v1/fine_tuning/jobs/{job_id}", "method": "GET", "status": "404"}
    before = value(local.get("/metrics").text, "tunedeck_http_requests_total", **route)
    for _ in range(2):
        missing = local.get(
            "/api/v1/fine_tuning/jobs/ftjob-nope", headers={"Authorization": f"Bearer {admin_key}"}
        )
        assert missing.status_code == 404
        assert missing.headers["x-request-id"]
    text = local.get("/metrics").text
    assert value(text, "tunedeck_http_requests_total", **route) == before + 2
    latency = {"route": route["route"], "method": "GET"}
    assert value(text, "tunedeck_http_request_duration_seconds_count", **latency) >= 2
    assert "ftjob-nope" not in text
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    before = value(text, "tunedeck_http_requests_total", **unmatched)
    local.get("/wp-login.php")  # a scanner's path becomes "unmatched", not a series of its own
    text = local.get("/metrics").text
    assert value(text, "tunedeck_http_requests_total", **unmatched) == before + 1
    assert "wp-login" not in text


def test_metrics_token_rules(configured: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.main import create_app

    app = create_app()
    with TestClient(app) as remote, TestClient(app, client=LOOPBACK) as local:
        assert local.get("/metrics").status_code == 200  # loopback, no token set: allowed
        refused = remote.get("/metrics")
        assert refused.status_code == 403 and "TUNEDECK_METRICS_TOKEN" in refused.json()["error"]["message"]

        monkeypatch.setenv("TUNEDECK_METRICS_TOKEN", "s3cret-scrape-token")
        get_settings.cache_clear()
        assert local.get("/metrics").status_code == 401  # with a token, loopback needs it too
        assert remote.get("/metrics").status_code == 401
        assert remote.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = remote.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape-token"})
        assert ok.status_code == 200 and "tunedeck_jobs" in ok.text
        # the token opens /metrics only, not the app
        assert (
            remote.get(
                "/api/v1/fine_tuning/jobs", headers={"Authorization": "Bearer s3cret-scrape-token"}
            ).status_code
            == 401
        )


@pytest.fixture
def live_url(configured: Path) -> Iterator[str]:
    """The app under a real uvicorn on loopback, so a live stream really stays open."""
    from app.main import create_app

    server = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=free_port(), log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(timeout=10)


def _open_streams(url: str) -> float:
    return value(httpx.get(url + "/metrics").text, "tunedeck_sse_connections")


def test_open_live_streams_are_counted(live_url: str, admin_key: str) -> None:
    with session_scope() as session:
        job = _job(JobStatus.queued)
        session.add(job)
    before = _open_streams(live_url)
    headers = {"Authorization": f"Bearer {admin_key}"}
    with httpx.stream(
        "GET", f"{live_url}/api/v1/fine_tuning/jobs/{job.id}/stream", headers=headers
    ) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()  # kept: dropping the iterator would close the connection
        assert next(lines).startswith("retry:")  # the stream is open and has started
        assert _open_streams(live_url) == before + 1
    deadline = time.monotonic() + 10
    while _open_streams(live_url) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _open_streams(live_url) == before
    assert samples(httpx.get(live_url + "/metrics").text)  # still parses
