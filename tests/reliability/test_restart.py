"""Stopping `tunedeck run` mid-job hands the job back; starting it again resumes the job from its
last checkpoint and finishes it."""

from pathlib import Path

import pytest

from tests.e2e.support import Instance, upload_rows, wait_for

pytestmark = pytest.mark.slow


def test_stopping_tunedeck_run_mid_job_and_starting_again_resumes_it(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    env = {"TUNEDECK_LEASE_SECONDS": "3", "TUNEDECK_RETRY_BACKOFF_SECONDS": "1"}
    instance = Instance(tmp_path / "data", env)
    instance.cli(
        "models", "register", "--data-dir", str(instance.data_dir), "tiny-llama", str(tiny_model_dir)
    )
    instance.start()
    try:
        with instance.client() as client:
            file_id = upload_rows(client)
            hp = {
                "n_epochs": 20,
                "save_steps": 5,
                "logging_steps": 1,
                "batch_size": 4,
                "gradient_accumulation_steps": 1,
                "max_seq_length": 128,
                "gradient_checkpointing": False,
            }
            job_id = client.post(
                "/api/v1/fine_tuning/jobs",
                json={"model": "tiny-llama", "training_file": file_id, "hyperparameters": hp},
            ).json()["id"]
            url = f"/api/v1/fine_tuning/jobs/{job_id}"
            wait_for(lambda: client.get(url).json()["progress"]["step"] >= 12, timeout=180, message="step 12")
    finally:
        instance.stop()
    # A new process on the same data dir (the port changes; the database and artifacts stay).
    again = Instance(tmp_path / "data", env)
    again.start()
    try:
        with again.client() as client:
            url = f"/api/v1/fine_tuning/jobs/{job_id}"
            assert client.get(url).json()["status"] in (
                "retrying",
                "validating_files",
                "running",
                "succeeded",
            )
            job = wait_for(
                lambda: (j := client.get(url).json())["status"] in ("succeeded", "failed") and j,
                timeout=240,
                message="the resumed job",
            )
            assert job["status"] == "succeeded", job["error"]
            messages = [
                e["message"] for e in client.get(url + "/events", params={"limit": 200}).json()["data"]
            ]
            assert job["attempt"] == 2, (job, messages[:12])
            messages = [
                e["message"] for e in client.get(url + "/events", params={"limit": 200}).json()["data"]
            ]
            assert any("tunedeck run shut down" in m for m in messages)
            assert any("resuming from the checkpoint at step" in m for m in messages)
            steps = sorted(
                p["step"] for p in client.get(url + "/metrics").json()["data"] if p["key"] == "train_loss"
            )
            assert steps == list(range(1, 181))  # 9 steps per epoch, each once
    finally:
        again.stop()
