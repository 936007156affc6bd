"""tunedeck's ``classification`` criterion: a SEQ_CLS job's classifier (its adapter or a checkpoint)
labels each item, the run reports accuracy and macro-F1 beside the pass counts, read with the
official client; runs it cannot grade are refused with the reason."""

from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient

from tests.factories import run_job
from tests.tasks.conftest import create_job, upload
from tests.tasks.test_classification import sentiment_rows
from worker.evals.classify import accuracy_and_macro_f1
from worker.evals.run import run_eval

pytestmark = pytest.mark.slow

SENTIMENT = {
    "name": "sentiment",
    "data_source_config": {
        "type": "custom",
        "item_schema": {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]},
    },
    "testing_criteria": [
        {
            "type": "classification",
            "name": "label",
            "input": "{{item.input}}",
            "reference": "{{item.reference}}",
        }
    ],
}


def test_macro_f1_counts_every_label_either_side_names() -> None:
    predicted, reference = ["a", "a", "b", "b", "c"], ["a", "b", "b", "b", "b"]
    accuracy, macro_f1 = accuracy_and_macro_f1(zip(predicted, reference, strict=True))
    # F1: a = 2·1/(2+1), b = 2·2/(2+4), c = 0 (predicted once, never right)
    assert accuracy == pytest.approx(3 / 5)
    assert macro_f1 == pytest.approx((2 / 3 + 4 / 6 + 0) / 3)
    assert accuracy_and_macro_f1([]) == (None, None)


def test_a_classifier_job_is_graded_by_accuracy_and_macro_f1(
    client: TestClient, tiny_model: str, admin_key: str, sqlite_only: None
) -> None:
    file_id = upload(client, sentiment_rows(), validation_split="0.2")
    hp = {"task_type": "SEQ_CLS", "r": 16, "lora_alpha": 16, "learning_rate": 5e-3, "n_epochs": 3}
    job_id = create_job(client, tiny_model, file_id, batch_size=8, **hp)
    assert run_job(job_id) == "succeeded"
    model = f"{tiny_model}:{job_id}"

    official = openai.OpenAI(
        api_key=admin_key, base_url="http://testserver/api/v1", http_client=client, max_retries=0
    )
    made = official.evals.create(**SENTIMENT)  # type: ignore[arg-type]
    source = {"type": "job_validation", "job_id": job_id}
    run = official.evals.runs.create(
        made.id,
        data_source={"type": "completions", "model": model, "source": source},  # type: ignore[arg-type,typeddict-item]
    )
    assert run.status == "queued"
    assert run_eval(run.id) == "completed"

    done = official.evals.runs.retrieve(run.id, eval_id=made.id)
    counts = done.result_counts
    assert counts.total == 12 and counts.errored == 0 and counts.passed + counts.failed == 12
    result = done.per_testing_criteria_results[0]
    extra: dict[str, Any] = result.model_extra or {}
    assert extra["accuracy"] == pytest.approx(counts.passed / 12) and extra["accuracy"] >= 0.75
    items = list(official.evals.runs.output_items.list(run.id, eval_id=made.id))
    verdicts = [i.results[0].model_dump()["sample"] for i in items]
    pairs = [(v["predicted"], v["reference"]) for v in verdicts]
    assert {r for _, r in pairs} == {"positive", "negative"}
    assert extra["macro_f1"] == pytest.approx(accuracy_and_macro_f1(pairs)[1])
    assert items[0].sample.output[0].content in ("positive", "negative")  # the label, as the answer
    page = client.get(f"/evals/{made.id}/runs/{run.id}").text
    assert f"macro-F1 {extra['macro_f1']:.3f}" in page

    # what cannot be graded so is refused before it starts
    chat_model = {"type": "completions", "model": tiny_model, "source": source}
    refused = client.post(f"/api/v1/evals/{made.id}/runs", json={"data_source": chat_model})
    assert (
        refused.status_code == 422 and "not the adapter (<base>:<job>)" in refused.json()["error"]["message"]
    )
    mixed = {**SENTIMENT, "testing_criteria": [*SENTIMENT["testing_criteria"], _says_positive()]}
    mixed_id = client.post("/api/v1/evals", json=mixed).json()["id"]
    refused = client.post(
        f"/api/v1/evals/{mixed_id}/runs",
        json={"data_source": {"type": "completions", "model": model, "source": source}},
    )
    assert refused.status_code == 422 and "a classifier gives labels" in refused.json()["error"]["message"]


def _says_positive() -> dict[str, Any]:
    return {
        "type": "string_check",
        "name": "positive",
        "input": "{{sample.output_text}}",
        "reference": "positive",
        "operation": "eq",
    }
