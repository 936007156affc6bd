"""Resume a failed job from a checkpoint the user picks: later checkpoints are dropped, the run
continues from that step (model, optimizer, data position) and the curve has each step once."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import get_settings
from tests.factories import INSTRUCTION_ROWS, create_job, events, run_job, upload


def test_resume_a_failed_job_from_an_earlier_checkpoint(
    client: TestClient,
    tiny_model: str,
    configured: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the runner's database code is covered on Postgres by the end-to-end test")
    monkeypatch.setenv("TUNEDECK_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("TUNEDECK_FAULT_INJECTION", "oom_at_step=8")
    get_settings.cache_clear()
    job_id = create_job(
        client, tiny_model, upload(client, INSTRUCTION_ROWS[:20]), hp={"n_epochs": 3, "save_steps": 3}
    )
    assert run_job(job_id, "test-worker") == "failed"
    url = f"/api/v1/fine_tuning/jobs/{job_id}"
    assert client.get(url).json()["error"]["code"] == "out_of_memory"
    checkpoints = {c["step_number"]: c["id"] for c in client.get(url + "/checkpoints").json()["data"]}
    assert sorted(checkpoints) == [3, 6]

    page = client.get(f"/jobs/{job_id}").text
    assert page.count("Resume from here") == 2
    not_mine = client.post(url + "/resume", json={"checkpoint": "ftckpt-nope"})
    assert not_mine.status_code == 404
    resumed = client.post(url + "/resume", json={"checkpoint": checkpoints[3]}).json()
    assert resumed["status"] == "queued" and resumed["error"] is None
    assert [c["step_number"] for c in client.get(url + "/checkpoints").json()["data"]] == [3]
    assert not (configured / "artifacts" / "jobs" / job_id / "checkpoints" / "step-6").exists()
    assert client.post(url + "/resume", json={"checkpoint": checkpoints[3]}).status_code == 409  # queued now

    monkeypatch.delenv("TUNEDECK_FAULT_INJECTION")
    get_settings.cache_clear()
    assert run_job(job_id, "test-worker") == "succeeded"
    messages = events(client, job_id)
    assert any(
        "Resume from the checkpoint at step 3 requested; 1 later checkpoint(s) dropped" in m for m in messages
    )
    assert any(m.endswith("resuming from the checkpoint at step 3") for m in messages)
    points = client.get(url + "/metrics").json()["data"]
    total = client.get(url).json()["progress"]["total_steps"]
    assert sorted(p["step"] for p in points if p["key"] == "train_loss") == list(range(1, total + 1))
    assert (configured / "artifacts" / "jobs" / job_id / "adapter" / "adapter_model.safetensors").exists()


def _curve(client: TestClient, job_id: str) -> dict[str, dict[int, float]]:
    points = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/metrics").json()["data"]
    curves: dict[str, dict[int, float]] = {}
    for point in points:
        curves.setdefault(point["key"], {})[point["step"]] = point["value"]
    return curves


def test_a_resumed_curve_matches_the_uninterrupted_one_at_every_logged_step(
    client: TestClient,
    tiny_model: str,
    configured: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The checkpoint (step 6) falls between two logging steps (4 and 8): the first loss logged
    after the resume still averages steps 5–8, and tokens (and tokens/s) go on from the checkpoint."""
    if not database_url.startswith("sqlite"):
        pytest.skip("the runner's database code is covered on Postgres by the end-to-end test")
    file_id = upload(client, INSTRUCTION_ROWS[:20])
    hp = {"n_epochs": 3, "save_steps": 6, "logging_steps": 4, "eval_steps": 100, "lora_dropout": 0.0}
    twin = create_job(client, tiny_model, file_id, hp=hp)
    assert run_job(twin, "test-worker") == "succeeded"

    monkeypatch.setenv("TUNEDECK_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("TUNEDECK_FAULT_INJECTION", "oom_at_step=8")
    get_settings.cache_clear()
    job_id = create_job(client, tiny_model, file_id, hp=hp)
    assert run_job(job_id, "test-worker") == "failed"
    url = f"/api/v1/fine_tuning/jobs/{job_id}"
    checkpoints = {c["step_number"]: c["id"] for c in client.get(url + "/checkpoints").json()["data"]}
    assert sorted(checkpoints) == [6]
    client.post(url + "/resume", json={"checkpoint": checkpoints[6]}).raise_for_status()
    monkeypatch.delenv("TUNEDECK_FAULT_INJECTION")
    get_settings.cache_clear()
    assert run_job(job_id, "test-worker") == "succeeded"

    expected, resumed = _curve(client, twin), _curve(client, job_id)
    logged = sorted(expected["train_loss"])
    assert sorted(resumed["train_loss"]) == logged and 8 in logged and 6 not in logged
    for step, loss in expected["train_loss"].items():
        assert resumed["train_loss"][step] == pytest.approx(loss, rel=1e-5), step
        assert resumed["tokens_seen"][step] == expected["tokens_seen"][step], step
        assert step in resumed["tokens_per_second"], step  # also at step 8, the first after the resume
    assert (
        client.get(url).json()["trained_tokens"]
        == client.get(f"/api/v1/fine_tuning/jobs/{twin}").json()["trained_tokens"]
    )
