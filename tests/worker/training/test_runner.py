"""The worker's job runner in-process, on the real database and the tiny model: data choices,
4-bit loading, loss only on responses, and readable failures."""

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.db import read_session
from app.core.tables import Job
from tests.factories import INSTRUCTION_ROWS, QUICK, create_job, events, run_job, upload


def test_separate_validation_file_trains_on_all_training_rows(
    client: TestClient, tiny_model: str, sqlite_only: None
) -> None:
    train_id = upload(client, INSTRUCTION_ROWS[:20])
    valid_id = upload(client, INSTRUCTION_ROWS[20:28])
    job_id = create_job(client, tiny_model, train_id, validation_file=valid_id)
    assert run_job(job_id, "test-worker") == "succeeded"
    assert "20 training rows, 8 validation rows" in events(client, job_id)
    assert run_job(job_id, "test-worker") == "skipped"  # a re-delivered message does not run it twice


@pytest.mark.parametrize(
    "quantization",
    [
        {"quantization": "4bit"},
        {"quantization": "4bit", "bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": False},
        {"quantization": "8bit"},
    ],
    ids=["nf4-double-quant", "fp4", "8bit"],
)
def test_bitsandbytes_quantized_bases_train_on_cpu(
    client: TestClient, tiny_model: str, sqlite_only: None, quantization: dict[str, object]
) -> None:
    file_id = upload(client, INSTRUCTION_ROWS[:12])
    job_id = create_job(client, tiny_model, file_id, hp=quantization)
    status = run_job(job_id, "test-worker")
    job = client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()
    assert status == "succeeded", job["error"]
    assert any(f"quantization {quantization['quantization']}" in m for m in events(client, job_id))


def test_missing_weights_fail_with_a_model_load_message(
    client: TestClient, tiny_model_dir: Path, tmp_path: Path, configured: Path, sqlite_only: None
) -> None:
    from app.basemodels.service import register_model
    from app.core.db import session_scope

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    with session_scope() as session:
        register_model(session=session, name="broken", folder=broken)
    job_id = create_job(client, "broken", upload(client, INSTRUCTION_ROWS[:10]))
    (broken / "model.safetensors").write_bytes(b"not safetensors")  # broken after submission
    refused = client.post(
        "/api/v1/fine_tuning/jobs",
        json={"model": "broken", "training_file": upload(client, INSTRUCTION_ROWS[:10])},
    )
    assert refused.status_code == 400 and "not a valid safetensors file" in refused.json()["error"]["message"]
    assert run_job(job_id, "test-worker") == "failed"
    error = client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()["error"]
    assert error["code"] == "model_load_failed" and error["message"].startswith("Model load failure")


def test_missing_dataset_files_fail_with_a_data_message(
    client: TestClient, tiny_model: str, configured: Path, sqlite_only: None
) -> None:
    file_id = upload(client, INSTRUCTION_ROWS[:10])
    job_id = create_job(client, tiny_model, file_id)
    shutil.rmtree(configured / "artifacts" / "files" / file_id)
    assert run_job(job_id, "test-worker") == "failed"
    error = client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()["error"]
    assert error["code"] == "invalid_training_file" and "missing" in error["message"]
    with read_session() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.finished_at is not None and job.adapter_key is None


def test_loss_covers_only_the_response_tokens(tiny_model_dir: Path) -> None:
    from datasets import Dataset
    from trl import SFTTrainer

    from app.core.spec import TrainingSpec
    from worker.training.data import to_prompt_completion
    from worker.training.pipeline import load_model, load_tokenizer, lora_config, pick_device, sft_config

    spec = TrainingSpec(**QUICK)  # type: ignore[arg-type]
    device = pick_device("auto")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    row = {"instruction": "What is 2 plus 2?", "input": "", "output": "4, of course."}
    trainer = SFTTrainer(
        model=load_model(str(tiny_model_dir), spec, device),
        args=sft_config(spec, output_dir=Path("/tmp/unused"), device=device, seed=1, has_eval=False),
        train_dataset=Dataset.from_list([to_prompt_completion(row)]),
        processing_class=tokenizer,
        peft_config=lora_config(spec, num_layers=2),
    )
    example = trainer.train_dataset[0]
    scored = [
        token for token, label in zip(example["input_ids"], example["labels"], strict=True) if label != -100
    ]
    assert tokenizer.decode(scored).strip() == "4, of course.<|im_end|>"
