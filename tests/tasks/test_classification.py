"""SEQ_CLS end to end on the tiny Llama: a job learns an easy labelling, reports valid_accuracy
next to valid_loss, keeps checkpoints, and its adapter (classifier head included) loads and
predicts in a fresh process."""

import json
import random
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core import metric_names
from tests.factories import run_job
from tests.tasks.conftest import create_job, metrics, run_fresh, upload

SUBJECTS = ["the movie", "this film", "our dinner", "that book", "the show", "my day", "the hotel", "a trip"]
EXTRAS = ["", " today", " overall", " again", " indeed", " honestly", " truly", " really"]


def sentiment_rows(n: int = 60, seed: int = 0) -> list[dict[str, str]]:
    """Texts that hold "good" or "bad"; the label says which (learnable from one token)."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        word = "good" if i % 2 else "bad"
        text = f"{rnd.choice(SUBJECTS)} was {word}{rnd.choice(EXTRAS)} ({i})"
        rows.append({"text": text, "label": "positive" if word == "good" else "negative"})
    return rows


PREDICT = """
import json, sys
import torch
from peft import PeftModel
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

base, adapter, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = AutoConfig.from_pretrained(adapter)  # the job saved the label names with the adapter
model = AutoModelForSequenceClassification.from_pretrained(base, config=config)
model = PeftModel.from_pretrained(model, adapter).eval()
tokenizer = AutoTokenizer.from_pretrained(base)
with torch.no_grad():
    ids = [model(**tokenizer(t, return_tensors="pt")).logits.argmax(-1).item() for t in texts]
print(json.dumps({"labels": [config.id2label[i] for i in ids], "id2label": config.id2label}))
"""


def test_seq_cls_job_learns_reports_accuracy_and_its_adapter_predicts_in_a_fresh_process(
    client: TestClient, tiny_model: str, tiny_model_dir: Path, configured: Path, sqlite_only: None
) -> None:
    file_id = upload(client, sentiment_rows(), validation_split="0.2")
    hp = {"task_type": "SEQ_CLS", "r": 16, "lora_alpha": 16, "learning_rate": 5e-3, "n_epochs": 4}
    job_id = create_job(client, tiny_model, file_id, batch_size=8, logging_steps=2, **hp)
    status = run_job(job_id, "test-worker")
    assert status == "succeeded", client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()["error"]

    accuracy = metrics(client, job_id, metric_names.VALID_ACCURACY)
    assert len(accuracy) == 4 and all(0.0 <= a <= 1.0 for a in accuracy)  # one point per epoch
    assert len(metrics(client, job_id, metric_names.VALID_LOSS)) == 4
    assert accuracy[-1] >= 0.9  # 12 validation rows; chance is 0.5
    assert metrics(client, job_id, metric_names.TRAIN_LOSS)
    checkpoints = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]
    assert len(checkpoints) == 3 and all(c["metrics"]["valid_loss"] is not None for c in checkpoints)

    adapter = configured / "artifacts" / "jobs" / job_id / "adapter"
    saved = json.loads((adapter / "adapter_config.json").read_text())
    assert saved["task_type"] == "SEQ_CLS" and "score" in saved["modules_to_save"]
    from safetensors import safe_open

    with safe_open(adapter / "adapter_model.safetensors", "pt") as weights:
        names = weights.keys()
    assert any(".score." in name for name in names)  # the trained head travels with the adapter

    validation = [
        json.loads(line)
        for line in (configured / "artifacts" / "files" / file_id / "validation.jsonl").open()
    ]
    texts = [row["text"] for row in validation] + ["the soup was good", "the soup was bad"]
    out = run_fresh(PREDICT, str(tiny_model_dir), str(adapter), json.dumps(texts))
    assert out["id2label"] == {"0": "negative", "1": "positive"}
    predicted = out["labels"][: len(validation)]
    fresh = sum(p == row["label"] for p, row in zip(predicted, validation, strict=True)) / len(validation)
    assert fresh == accuracy[-1]  # the same model as the job's last evaluation
    assert out["labels"][-2:] == ["positive", "negative"]


def test_classification_rows_train_from_csv_with_numeric_labels(
    client: TestClient, tiny_model: str, sqlite_only: None
) -> None:
    lines = ["text,label"] + [
        f"{row['text']},{int(row['label'] == 'positive')}" for row in sentiment_rows(16)
    ]
    response = client.post(
        "/api/v1/files",
        files={"file": ("d.csv", "\n".join(lines).encode())},
        data={"validation_split": "0.25"},
    )
    assert response.json()["format"] == "classification", response.text
    job_id = create_job(client, tiny_model, response.json()["id"], task_type="SEQ_CLS", n_epochs=1)
    assert run_job(job_id, "test-worker") == "succeeded"
    events = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 100}).json()["data"]
    assert "2 labels: 0, 1" in [e["message"] for e in events]
    assert len(metrics(client, job_id, metric_names.VALID_ACCURACY)) == 1


def test_a_single_label_fails_with_a_data_message(
    client: TestClient, tiny_model: str, sqlite_only: None
) -> None:
    rows = [{"text": f"text {i}", "label": "same"} for i in range(8)]
    job_id = create_job(client, tiny_model, upload(client, rows), task_type="SEQ_CLS")
    assert run_job(job_id, "test-worker") == "failed"
    error = client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()["error"]
    assert error["code"] == "invalid_training_file" and "one label only (same)" in error["message"]


def test_cancelling_a_seq_cls_job_stops_it_at_the_next_step(
    client: TestClient, tiny_model: str, configured: Path, sqlite_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.training.reporting import JobReporter

    job_id = create_job(
        client, tiny_model, upload(client, sentiment_rows(40)), task_type="SEQ_CLS", n_epochs=5
    )
    step = JobReporter.step

    def cancel_at_step_3(self: JobReporter, number: int, total: int, epoch: float | None) -> bool:
        if number == 3:
            client.post(f"/api/v1/fine_tuning/jobs/{self.job_id}/cancel")
        return step(self, number, total, epoch)

    monkeypatch.setattr(JobReporter, "step", cancel_at_step_3)
    assert run_job(job_id, "test-worker") == "cancelled"
    messages = [e["message"] for e in client.get(f"/api/v1/fine_tuning/jobs/{job_id}/events").json()["data"]]
    assert "Job cancelled at step 3" in messages
    assert not (configured / "artifacts" / "jobs" / job_id / "adapter").exists()


def test_early_stopping_keeps_the_best_checkpoint_as_the_classifier(
    client: TestClient, tiny_model: str, configured: Path, sqlite_only: None
) -> None:
    # Validation labels contradict training labels: validation loss climbs once the head learns.
    rows = sentiment_rows(40)
    flipped = [{**row, "label": "negative" if row["label"] == "positive" else "positive"} for row in rows[:8]]
    train, valid = upload(client, rows, validation_split="0"), upload(client, flipped, validation_split="0")
    hp = {"task_type": "SEQ_CLS", "learning_rate": 5e-3, "max_steps": 30, "eval_steps": 2}
    body = {
        "model": tiny_model,
        "training_file": train,
        "validation_file": valid,
        "hyperparameters": {
            "batch_size": 4,
            "gradient_checkpointing": False,
            "early_stopping_patience": 2,
            **hp,
        },
    }
    job_id = client.post("/api/v1/fine_tuning/jobs", json=body).json()["id"]
    assert run_job(job_id, "test-worker") == "succeeded"
    messages = [e["message"] for e in client.get(f"/api/v1/fine_tuning/jobs/{job_id}/events").json()["data"]]
    kept = next(m for m in messages if m.startswith("Kept the best checkpoint"))
    best = (
        configured
        / "artifacts"
        / "jobs"
        / job_id
        / "checkpoints"
        / f"step-{kept.split('step ')[1].split(',')[0]}"
    )
    adapter = configured / "artifacts" / "jobs" / job_id / "adapter"
    weights = "adapter_model.safetensors"
    assert (best / weights).read_bytes() == (adapter / weights).read_bytes()
    assert {p.name for p in adapter.iterdir()} == {"adapter_config.json", weights, "config.json"}


LOGITS = """
import json, sys
import torch
from peft import PeftModel
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

texts = json.loads(sys.argv[1])
if len(sys.argv) > 3:  # base + adapter
    config = AutoConfig.from_pretrained(sys.argv[3])
    model = AutoModelForSequenceClassification.from_pretrained(sys.argv[2], config=config)
    model = PeftModel.from_pretrained(model, sys.argv[3])
else:  # the merged folder alone
    model = AutoModelForSequenceClassification.from_pretrained(sys.argv[2])
tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])
with torch.no_grad():
    print(json.dumps([model.eval()(**tokenizer(t, return_tensors="pt")).logits[0].tolist() for t in texts]))
"""


def test_seq_cls_adapter_merges_into_a_plain_classifier(
    client: TestClient, tiny_model: str, tiny_model_dir: Path, configured: Path, sqlite_only: None
) -> None:
    from worker.export.merge import run_merge

    file_id = upload(client, sentiment_rows(), validation_split="0.2")
    hp = {"task_type": "SEQ_CLS", "r": 16, "lora_alpha": 16, "learning_rate": 5e-3, "n_epochs": 4}
    job_id = create_job(client, tiny_model, file_id, batch_size=8, logging_steps=2, **hp)
    assert run_job(job_id, "test-worker") == "succeeded"
    merge = client.post(f"/api/v1/fine_tuning/jobs/{job_id}/merge").json()
    assert run_merge(merge["id"]) == "succeeded", client.get(
        f"/api/v1/fine_tuning/jobs/{job_id}/merge"
    ).json()
    texts = json.dumps(["the movie was good", "the hotel was bad", "my day was good indeed"])
    adapter = configured / "artifacts" / "jobs" / job_id / "adapter"
    merged = configured / "artifacts" / "jobs" / job_id / "merged"
    with_adapter = run_fresh(LOGITS, texts, str(tiny_model_dir), str(adapter))
    plain = run_fresh(LOGITS, texts, str(merged))
    assert len(plain) == 3 and len(plain[0]) == 2  # two labels, from the saved config
    assert (
        max(
            abs(a - b)
            for row_a, row_b in zip(plain, with_adapter, strict=True)
            for a, b in zip(row_a, row_b, strict=True)
        )
        < 1e-4
    )
