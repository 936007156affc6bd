"""Fault tests with real Celery worker processes: a worker SIGKILLed mid-epoch, two workers and
duplicate messages racing for one job, and a job that fails the same way on every attempt."""

import os
import signal
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.queue import send_training_task
from tests.e2e.support import check_adapter_in_fresh_process, wait_for
from tests.factories import INSTRUCTION_ROWS, create_job, events, upload
from tests.reliability.conftest import Workers, finished, job_state

pytestmark = pytest.mark.slow

JOB = {"n_epochs": 4, "save_steps": 5, "logging_steps": 1}  # 36 train rows → 9 steps per epoch, 36 in all


def test_sigkill_mid_epoch_resumes_from_the_last_checkpoint(
    client: TestClient,
    tiny_model: str,
    tiny_model_dir: Path,
    workers: Workers,
    configured: Path,
    tmp_path: Path,
) -> None:
    job_id = create_job(client, tiny_model, upload(client, INSTRUCTION_ROWS), hp=JOB)
    first = workers.start()
    wait_for(lambda: job_state(client, job_id)["progress"]["step"] >= 12, timeout=180, message="step 12")
    os.kill(first.pid, signal.SIGKILL)  # mid-epoch 2, after the checkpoint at step 10
    first.wait()
    workers.start()
    job = finished(client, job_id, 240, workers)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempt"] == 2
    messages = events(client, job_id)
    assert any("stopped responding (lease expired); retrying" in m for m in messages)
    resumed = next(m for m in messages if "resuming from the checkpoint at step" in m)
    step = int(resumed.rsplit(" ", 1)[1])
    assert step >= 10 and step % 5 == 0  # at most one checkpoint interval lost
    points = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/metrics").json()["data"]
    train_steps = sorted(p["step"] for p in points if p["key"] == "train_loss")
    assert train_steps == list(range(1, 37))  # each step once: no gap, no duplicate
    adapter = configured / "artifacts" / "jobs" / job_id / "adapter"
    assert check_adapter_in_fresh_process(tiny_model_dir, adapter)["max_logit_diff"] > 0


def test_two_workers_and_duplicate_messages_run_the_job_once(
    client: TestClient, tiny_model: str, workers: Workers
) -> None:
    workers.start()
    workers.start()
    job_id = create_job(client, tiny_model, upload(client, INSTRUCTION_ROWS[:20]), hp={"n_epochs": 2})
    send_training_task(job_id)  # a re-delivered message, twice
    send_training_task(job_id)
    job = finished(client, job_id, 180, workers)
    assert job["status"] == "succeeded" and job["attempt"] == 1
    started = [m for m in events(client, job_id) if m.startswith("Attempt ")]
    assert len(started) == 1, started
    time.sleep(2)  # the late duplicates find nothing to do
    assert job_state(client, job_id)["attempt"] == 1


def test_a_job_failing_every_attempt_ends_failed_after_max_attempts(
    client: TestClient, tiny_model: str, workers: Workers
) -> None:
    workers.start(TUNEDECK_FAULT_INJECTION="oom_at_step=2")
    job_id = create_job(client, tiny_model, upload(client, INSTRUCTION_ROWS[:20]), hp={"n_epochs": 2})
    job = finished(client, job_id, 240, workers)
    assert job["status"] == "failed" and job["attempt"] == 3 and job["max_attempts"] == 3
    assert job["error"]["code"] == "out_of_memory"
    assert "Out of memory while training" in job["error"]["message"]
    assert job["error"]["message"].endswith("gave up after 3 of 3 attempts")
    retries = [m for m in events(client, job_id) if "retrying in" in m]
    assert len(retries) == 2
    time.sleep(4)  # no loop: nothing runs it again
    assert job_state(client, job_id)["attempt"] == 3
