"""Redis as the broker, with the test's own server: a job longer than the visibility timeout, and
the server stopped and started again mid-job (losing every queued message)."""

import time

import pytest
from fastapi.testclient import TestClient

from tests.e2e.support import wait_for
from tests.factories import INSTRUCTION_ROWS, create_job, events, upload
from tests.reliability.conftest import RedisServer, Workers, finished, job_state

pytestmark = pytest.mark.slow

SLOW = {"TUNEDECK_FAULT_INJECTION": "step_delay=0.3", "TUNEDECK_LEASE_SECONDS": "30"}


def train_steps(client: TestClient, job_id: str) -> list[int]:
    points = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/metrics").json()["data"]
    return sorted(p["step"] for p in points if p["key"] == "train_loss")


def test_a_job_longer_than_the_visibility_timeout_is_not_run_twice(
    redis_broker: RedisServer, client: TestClient, tiny_model: str, workers: Workers
) -> None:
    short = {
        **SLOW,
        "TUNEDECK_REDIS_VISIBILITY_TIMEOUT_SECONDS": "2",
        # look for overdue messages every second or so, not every ~100 s (kombu's default)
        "TUNEDECK_REDIS_TRANSPORT_OPTIONS": '{"unacked_restore_interval": 1, "unacked_restore_throttle": 1}',
    }
    workers.start(**short)
    workers.start(**short)
    job_id = create_job(client, tiny_model, upload(client, INSTRUCTION_ROWS), hp={"n_epochs": 2})
    job = finished(client, job_id, 300, workers)  # 18 steps of ≥ 0.3 s: several visibility timeouts
    assert job["status"] == "succeeded" and job["attempt"] == 1, job
    assert len([m for m in events(client, job_id) if m.startswith("Attempt ")]) == 1
    assert train_steps(client, job_id) == list(range(1, 19))
    # Redis did re-deliver the unacknowledged message to the idle worker, which skipped it
    logs = workers.logs(tail=None)
    assert "is not waiting for a worker; skipping" in logs or ": 'skipped'" in logs, logs[-3000:]


def test_redis_restarting_mid_job_loses_nothing_and_new_jobs_are_consumed(
    redis_broker: RedisServer, client: TestClient, tiny_model: str, workers: Workers
) -> None:
    workers.start(**SLOW, TUNEDECK_REDISPATCH_AFTER_SECONDS="5")
    file_id = upload(client, INSTRUCTION_ROWS)
    running = create_job(client, tiny_model, file_id, hp={"n_epochs": 2})
    wait_for(lambda: job_state(client, running)["progress"]["step"] >= 5, timeout=180, message="step 5")

    redis_broker.stop()
    submitted_while_down = create_job(client, tiny_model, file_id)  # accepted; its message is not sent
    assert job_state(client, submitted_while_down)["status"] == "queued"
    time.sleep(3)
    redis_broker.start()  # empty: the queue is gone

    job = finished(client, running, 240, workers)
    assert job["status"] == "succeeded" and job["attempt"] == 1, job
    assert train_steps(client, running) == list(range(1, 19))
    # the job whose message never reached the broker is sent again by the worker's reaper
    assert finished(client, submitted_while_down, 240, workers)["status"] == "succeeded"
    after = create_job(client, tiny_model, file_id)
    assert finished(client, after, 180, workers)["status"] == "succeeded"
