"""The spine end to end with real processes: upload → job on a Celery worker → live loss over
SSE (with a reconnect) → succeeded → adapter download that loads in a fresh process."""

import io
import time
import zipfile
from pathlib import Path

import pytest

from tests.e2e.support import Instance, check_adapter_in_fresh_process, sse_messages, wait_for
from tests.factories import upload

pytestmark = pytest.mark.slow

TINY_JOB = {
    "n_epochs": 4,
    "batch_size": 4,
    "gradient_accumulation_steps": 1,
    "learning_rate": 5e-3,
    "logging_steps": 1,
    "max_seq_length": 128,
    "gradient_checkpointing": False,
}


def run_spine(instance: Instance, tiny_model_dir: Path, tmp_path: Path) -> None:
    with instance.client() as client:
        file_id = upload(client)
        created = client.post(
            "/api/v1/fine_tuning/jobs",
            json={"model": "tiny-llama", "training_file": file_id, "hyperparameters": TINY_JOB},
        )
        assert created.status_code == 200, created.text
        job_id = created.json()["id"]
        stream = f"{instance.url}/api/v1/fine_tuning/jobs/{job_id}/stream"

        # Watch live; drop the connection after a few points, then resume with Last-Event-ID.
        points: list[dict[str, object]] = []
        seen_while_running = 0
        status, last_id = "queued", None
        for message in sse_messages(stream, auth=instance.auth):
            last_id = message.id or last_id
            if message.event == "status":
                status = message.data["status"]
            elif message.event == "metrics":
                points += message.data
                seen_while_running += len(message.data) if status == "running" else 0
                if len(points) >= 10:
                    break
        for message in sse_messages(stream, last_event_id=last_id, auth=instance.auth):
            if message.event == "status":
                status = message.data["status"]
            elif message.event == "metrics":
                points += message.data
            elif message.event == "end":
                break
        assert status == "succeeded", instance.log()
        assert seen_while_running > 0, "no loss point arrived while the job was running"

        everything = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/metrics").json()["data"]
        ids = [p["id"] for p in points]
        assert len(ids) == len(set(ids)), "a point arrived twice"
        assert sorted(ids) == [p["id"] for p in everything], "a point is missing"
        job = client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()
        assert job["fine_tuned_model"] == f"tiny-llama:{job_id}" and job["trained_tokens"] > 0
        # 40 rows → 36 train (9:1) → 9 steps of 4 per epoch → 36 steps in 4 epochs
        assert job["progress"]["step"] == job["progress"]["total_steps"] == 36
        train_steps = sorted(p["s"] for p in points if p["k"] == "train_loss")
        assert train_steps == list(range(1, 37))
        assert sorted(p["s"] for p in points if p["k"] == "valid_loss") == [9, 18, 27, 36]
        checkpoints = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]
        steps = [c["step_number"] for c in checkpoints]  # one per epoch; the last 3 kept, plus the best
        best = min(checkpoints, key=lambda c: (c["metrics"]["valid_loss"], -c["step_number"]))["step_number"]
        assert steps[:3] == [36, 27, 18] and set(steps) == {36, 27, 18, best}
        assert checkpoints[0]["metrics"]["valid_loss"] is not None
        models = [m["id"] for m in client.get("/api/v1/models").json()["data"]]
        assert f"tiny-llama:{job_id}" in models

        download = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/adapter")
        assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
        adapter_dir = tmp_path / "adapter"
        zipfile.ZipFile(io.BytesIO(download.content)).extractall(adapter_dir)
        assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter_dir.iterdir()}

    result = check_adapter_in_fresh_process(tiny_model_dir, adapter_dir)
    assert result["max_logit_diff"] > 1e-3, result


def test_spine_on_sqlite_and_embedded_broker(
    embedded: Instance, tiny_model_dir: Path, tmp_path: Path
) -> None:
    run_spine(embedded, tiny_model_dir, tmp_path)


@pytest.mark.services
def test_spine_on_postgres_and_redis(services: Instance, tiny_model_dir: Path, tmp_path: Path) -> None:
    run_spine(services, tiny_model_dir, tmp_path)


def test_cancel_running_job_stops_within_a_few_steps_and_frees_the_worker(embedded: Instance) -> None:
    with embedded.client() as client:
        file_id = upload(client)
        long_job = {**TINY_JOB, "n_epochs": 200}
        job_id = client.post(
            "/api/v1/fine_tuning/jobs",
            json={"model": "tiny-llama", "training_file": file_id, "hyperparameters": long_job},
        ).json()["id"]
        url = f"/api/v1/fine_tuning/jobs/{job_id}"
        running = wait_for(
            lambda: (j := client.get(url).json())["status"] == "running" and j["progress"]["step"] >= 3 and j,
            timeout=120,
            message="the job to run a few steps",
        )
        asked_at = time.monotonic()
        assert client.post(url + "/cancel").json()["cancel_requested"] is True
        final = wait_for(
            lambda: (j := client.get(url).json())["status"] == "cancelled" and j, timeout=60, message="cancel"
        )
        assert time.monotonic() - asked_at < 30
        steps = [p["step"] for p in client.get(url + "/metrics").json()["data"] if p["key"] == "train_loss"]
        assert max(steps) <= running["progress"]["step"] + 5, (max(steps), running["progress"]["step"])
        assert final["progress"]["total_steps"] == 1800 and final["adapter_url"] is None
        events = [e["message"] for e in client.get(url + "/events", params={"limit": 100}).json()["data"]]
        assert any(m.startswith(("Job cancelled at step", "Job cancelled during evaluation")) for m in events)

        # The worker is free: the next job runs to the end.
        quick = {**TINY_JOB, "n_epochs": 1}
        next_id = client.post(
            "/api/v1/fine_tuning/jobs",
            json={"model": "tiny-llama", "training_file": file_id, "hyperparameters": quick},
        ).json()["id"]
        done = wait_for(
            lambda: (
                (j := client.get(f"/api/v1/fine_tuning/jobs/{next_id}").json())["status"]
                in ("succeeded", "failed")
                and j
            ),
            timeout=120,
            message="the next job",
        )
        assert done["status"] == "succeeded", done["error"]


def test_smollm2_trains_on_cpu_and_train_loss_falls(embedded: Instance) -> None:
    """The real bundled model, registered by `tunedeck run` on first start, with the demo dataset."""
    with embedded.client() as client:
        models = {m["id"] for m in client.get("/api/v1/models").json()["data"]}
        assert "smollm2-135m-instruct" in models
        demo = next(
            f for f in client.get("/api/v1/files").json()["data"] if f["filename"] == "demo-lora-faq.jsonl"
        )
        spec = {
            "n_epochs": 2,
            "batch_size": 8,
            "gradient_accumulation_steps": 1,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "max_seq_length": 256,
            "gradient_checkpointing": False,
            "warmup_ratio": 0,
        }
        job_id = client.post(
            "/api/v1/fine_tuning/jobs",
            json={"model": "smollm2-135m-instruct", "training_file": demo["id"], "hyperparameters": spec},
        ).json()["id"]
        url = f"/api/v1/fine_tuning/jobs/{job_id}"
        job = wait_for(
            lambda: (j := client.get(url).json())["status"] in ("succeeded", "failed") and j,
            timeout=600,
            message="SmolLM2",
        )
        assert job["status"] == "succeeded", job["error"]
        points = [p for p in client.get(url + "/metrics").json()["data"] if p["key"] == "train_loss"]
        assert len(points) == 10  # 38 training rows → 5 batches of 8 per epoch
        # Batches group rows of similar length, so single steps differ a lot; each epoch sees
        # every row, so compare the first epoch's mean loss with the last one's.
        first = [p["value"] for p in points if p["epoch"] <= 1.0]
        last = [p["value"] for p in points if p["epoch"] > 1.0]
        assert sum(last) / len(last) < 0.9 * sum(first) / len(first), points
