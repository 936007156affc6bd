"""Checkpoints in-process on the tiny model: every N steps, published atomically, the last K and
the best kept; early stopping keeps the best checkpoint as the adapter; same seed, same curve."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.factories import INSTRUCTION_ROWS, create_job, events, run_job, upload


def checkpoint_dirs(data_dir: Path, job_id: str) -> list[str]:
    folder = data_dir / "artifacts" / "jobs" / job_id / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_every_n_steps_keeping_the_last_k_and_the_best(
    client: TestClient, tiny_model: str, configured: Path, sqlite_only: None
) -> None:
    file_id = upload(client, INSTRUCTION_ROWS[:20])  # 18 train rows → 5 steps per epoch
    hp = {"n_epochs": 3, "save_steps": 3, "eval_steps": 3, "save_total_limit": 2}
    job_id = create_job(client, tiny_model, file_id, hp=hp)
    assert run_job(job_id, "test-worker") == "succeeded"
    listed = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]
    steps = [c["step_number"] for c in listed]
    assert steps[:2] == [15, 12]  # the last two
    saved = {c["step_number"]: c["metrics"]["valid_loss"] for c in listed}
    assert len(steps) in (2, 3)  # plus the best, when it is not among the last two
    all_valid = [
        p
        for p in client.get(f"/api/v1/fine_tuning/jobs/{job_id}/metrics").json()["data"]
        if p["key"] == "valid_loss"
    ]
    best_step = min(all_valid, key=lambda p: (p["value"], -p["step"]))["step"]
    assert best_step in saved
    assert checkpoint_dirs(configured, job_id) == sorted(f"step-{s}" for s in steps)
    for step in steps:
        files = {
            p.name
            for p in (configured / "artifacts" / "jobs" / job_id / "checkpoints" / f"step-{step}").iterdir()
        }
        assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    assert not (configured / "artifacts" / "jobs" / job_id / "staging").exists()


def test_early_stopping_keeps_the_best_checkpoint_as_the_adapter(
    client: TestClient, tiny_model: str, configured: Path, sqlite_only: None
) -> None:
    # Train on one answer, validate on a contradicting one: validation loss soon climbs.
    prompts = [f"Say the code word for item {i}." for i in range(16)]
    train = upload(
        client, [{"instruction": p, "output": "alpha alpha alpha"} for p in prompts], validation_split="0"
    )
    valid = upload(
        client, [{"instruction": p, "output": "omega omega omega"} for p in prompts[:6]], validation_split="0"
    )
    hp = {
        "max_steps": 40,
        "eval_steps": 2,
        "early_stopping_patience": 2,
        "learning_rate": 1e-2,
        "r": 16,
        "lora_alpha": 32,
    }
    job_id = create_job(client, tiny_model, train, validation_file=valid, hp=hp)
    assert run_job(job_id, "test-worker") == "succeeded"
    job = client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()
    messages = events(client, job_id)
    stop = next(m for m in messages if m.startswith("Early stopping"))
    assert job["progress"]["step"] < 40, stop
    kept = next(m for m in messages if m.startswith("Kept the best checkpoint"))
    best_step = int(kept.split("step ")[1].split(",")[0])
    best_dir = configured / "artifacts" / "jobs" / job_id / "checkpoints" / f"step-{best_step}"
    adapter_dir = configured / "artifacts" / "jobs" / job_id / "adapter"
    assert (best_dir / "adapter_model.safetensors").read_bytes() == (
        adapter_dir / "adapter_model.safetensors"
    ).read_bytes()
    alerts = [
        e
        for e in client.get(f"/api/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 200}).json()["data"]
        if e["type"] == "alert"
    ]
    assert [a["data"]["kind"] for a in alerts] == ["overfitting"]
    page = client.get(f"/jobs/{job_id}").text
    assert 'data-alert="overfitting"' in page and "raise lora_dropout" in page


def test_same_seed_and_data_give_the_same_loss_curve(
    client: TestClient, tiny_model: str, sqlite_only: None
) -> None:
    file_id = upload(client, INSTRUCTION_ROWS[:24])
    curves = []
    for _ in range(2):
        job_id = create_job(client, tiny_model, file_id, hp={"n_epochs": 2, "lora_dropout": 0.1}, seed=7)
        assert run_job(job_id, "test-worker") == "succeeded"
        points = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/metrics").json()["data"]
        curves.append([(p["step"], p["value"]) for p in points if p["key"] in ("train_loss", "valid_loss")])
    assert curves[0] == curves[1] and len(curves[0]) > 10


def test_checkpoints_download_as_safetensors_without_pickles(
    client: TestClient, tiny_model: str, configured: Path, sqlite_only: None
) -> None:
    import io
    import zipfile

    job_id = create_job(client, tiny_model, upload(client, INSTRUCTION_ROWS[:12]), hp={"n_epochs": 1})
    assert run_job(job_id, "test-worker") == "succeeded"
    [checkpoint] = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]
    folder = configured / "artifacts" / "jobs" / job_id / "checkpoints" / f"step-{checkpoint['step_number']}"
    assert (folder / "optimizer.pt").exists()  # kept for resuming, never handed out
    archive = zipfile.ZipFile(io.BytesIO(client.get(checkpoint["download_url"]).content))
    names = set(archive.namelist())
    assert {"adapter_config.json", "adapter_model.safetensors"} <= names
    assert not any(name.endswith((".pt", ".pth", ".bin")) for name in names)


@pytest.mark.parametrize("init", ["gaussian", "pissa", "olora"])  # LoftQ needs CUDA (peft)
def test_every_adapter_initialisation_trains(
    client: TestClient, tiny_model: str, sqlite_only: None, init: str
) -> None:
    hp = {
        "n_epochs": 1,
        "init_lora_weights": init,
        "use_rslora": init == "gaussian",
        "use_dora": init == "olora",
    }
    job_id = create_job(client, tiny_model, upload(client, INSTRUCTION_ROWS[:12]), hp=hp)
    assert run_job(job_id, "test-worker") == "succeeded", client.get(
        f"/api/v1/fine_tuning/jobs/{job_id}"
    ).json()["error"]
