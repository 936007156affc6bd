"""Cancel at every stage of a job and of a merge, with a real worker process: each stage is made
slow on purpose (fault injection) so the test can cancel while it is under way, and the job must
end `cancelled` within about one stage, with the worker free for the next job."""

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.e2e.support import wait_for
from tests.factories import INSTRUCTION_ROWS, create_job, events, upload
from tests.reliability.conftest import Workers, finished, job_state

pytestmark = pytest.mark.slow

STAGE_S = 3.0  # how long each slowed-down stage takes
SLACK_S = 10.0  # process start-up, polling and a busy 2-core machine
SLOW_STAGES = f"validate_delay={STAGE_S},load_delay={STAGE_S},eval_batch_delay={STAGE_S},save_delay={STAGE_S}"


def wait_event(client: TestClient, job_id: str, text: str, timeout: float = 120) -> None:
    wait_for(
        lambda: any(text in m for m in events(client, job_id)), timeout=timeout, interval=0.1, message=text
    )


def cancel(client: TestClient, job_id: str, workers: Workers) -> tuple[dict, float]:  # type: ignore[type-arg]
    asked = time.monotonic()
    response = client.post(f"/api/v1/fine_tuning/jobs/{job_id}/cancel")
    assert response.status_code == 200, response.text
    job = finished(client, job_id, STAGE_S + SLACK_S + 30, workers)
    return job, time.monotonic() - asked


def test_cancel_while_validating_loading_evaluating_and_saving(
    client: TestClient, tiny_model: str, workers: Workers, configured: Path
) -> None:
    workers.start(TUNEDECK_FAULT_INJECTION=SLOW_STAGES)
    file_id = upload(client, INSTRUCTION_ROWS)
    stages = [
        ("Validating training data", "Job cancelled after validating the training data", {}),
        ("Loading base model", "Job cancelled while the model was loading", {}),
        ("Evaluating on the validation split", "Job cancelled during evaluation at step 9", {"n_epochs": 3}),
    ]
    for started, said, hp in stages:
        job_id = create_job(client, tiny_model, file_id, hp=hp)
        wait_event(client, job_id, started)
        job, took = cancel(client, job_id, workers)
        assert job["status"] == "cancelled", (started, job)
        assert took < STAGE_S + SLACK_S, (started, took)
        assert any(m.startswith(said) for m in events(client, job_id)), (said, events(client, job_id))
        assert job["adapter_url"] is None

    # Saving: the checkpoint being written is finished and published, then the job stops.
    job_id = create_job(client, tiny_model, file_id, hp={"n_epochs": 3, "save_steps": 3})
    staging = configured / "artifacts" / "jobs" / job_id / "staging" / "checkpoint-3"
    wait_for(staging.exists, timeout=120, interval=0.05, message="the first checkpoint being written")
    job, took = cancel(client, job_id, workers)
    assert job["status"] == "cancelled" and took < STAGE_S + SLACK_S, (job, took)
    checkpoints = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]
    assert [c["step_number"] for c in checkpoints] == [3]
    published = configured / "artifacts" / "jobs" / job_id / "checkpoints" / "step-3"
    assert (published / "adapter_model.safetensors").stat().st_size > 0
    assert not (configured / "artifacts" / "jobs" / job_id / "staging").exists()

    # The worker is free: the next job runs to the end.
    job_id = create_job(client, tiny_model, file_id)
    assert finished(client, job_id, 180, workers)["status"] == "succeeded"


def test_cancel_a_running_merge_discards_it_and_a_new_merge_succeeds(
    client: TestClient, tiny_model: str, workers: Workers, configured: Path
) -> None:
    workers.start(TUNEDECK_FAULT_INJECTION=f"merge_delay={STAGE_S}")
    job_id = create_job(client, tiny_model, upload(client, INSTRUCTION_ROWS[:20]))
    assert finished(client, job_id, 180, workers)["status"] == "succeeded"
    url = f"/api/v1/fine_tuning/jobs/{job_id}/merge"
    assert client.post(url).json()["status"] == "queued"
    wait_for(lambda: client.get(url).json()["status"] == "running", timeout=60, message="merge running")
    asked = time.monotonic()
    cancelling = client.post(url + "/cancel")
    assert cancelling.status_code == 200 and cancelling.json()["status"] == "cancelling", cancelling.text
    merge = wait_for(
        lambda: (m := client.get(url).json())["status"] == "cancelled" and m, timeout=60, message="cancelled"
    )
    assert time.monotonic() - asked < STAGE_S + SLACK_S
    assert merge["download_url"] is None
    assert not (configured / "artifacts" / "jobs" / job_id / "merged").exists()
    assert client.post(url + "/cancel").status_code == 409  # nothing under way any more
    assert "Merge cancelled; nothing was kept" in events(client, job_id)

    assert client.post(url).json()["status"] == "queued"  # a new merge, on the same (free) worker
    merge = wait_for(
        lambda: (m := client.get(url).json())["status"] in ("succeeded", "failed") and m,
        timeout=120,
        message="the second merge",
    )
    assert merge["status"] == "succeeded", merge
    assert (configured / "artifacts" / "jobs" / job_id / "merged" / "model.safetensors").exists()
    assert job_state(client, job_id)["status"] == "succeeded"
