"""A job that names evals (``evals`` in its body, tunedeck's) gets a run of each on every checkpoint
as it is saved and on its adapter when it ends, queued by the training worker for the short lane.
Runs graded while training goes on are shown end to end in tests/reliability/test_short_lane.py."""

import re
from typing import Any

from fastapi.testclient import TestClient

from tests.factories import INSTRUCTION_ROWS, QUICK, create_job, events, run_job, upload

ON_VALIDATION_ROWS = {  # what a job's validation rows hold: input, reference, messages
    "name": "rouge on the answers",
    "data_source_config": {
        "type": "custom",
        "item_schema": {"type": "object", "properties": {"input": {"type": "string"}}},
    },
    "testing_criteria": [
        {
            "type": "text_similarity",
            "name": "rouge",
            "input": "{{sample.output_text}}",
            "reference": "{{item.reference}}",
            "evaluation_metric": "rouge_l",
            "pass_threshold": 0.3,
        }
    ],
}


def refused(client: TestClient, model: str, file_id: str, evals: list[str]) -> dict[str, Any]:
    body = {"model": model, "training_file": file_id, "hyperparameters": QUICK, "evals": evals}
    answer = client.post("/api/v1/fine_tuning/jobs", json=body)
    assert answer.status_code == 422, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["param"] == "evals"
    return error


def test_evals_a_job_cannot_run_on_its_validation_rows_are_refused_when_it_is_made(
    client: TestClient, tiny_model: str
) -> None:
    file_id = upload(client, INSTRUCTION_ROWS)
    assert "no eval with id 'eval_nope'" in refused(client, tiny_model, file_id, ["eval_nope"])["message"]

    other_fields = {
        **ON_VALIDATION_ROWS,
        "testing_criteria": [dict(ON_VALIDATION_ROWS["testing_criteria"][0])],
    }
    other_fields["testing_criteria"][0]["reference"] = "{{item.answer}}"
    needs_answer = client.post("/api/v1/evals", json=other_fields).json()["id"]
    message = refused(client, tiny_model, file_id, [needs_answer])["message"]
    assert f"eval {needs_answer} cannot grade this job's validation rows" in message
    assert "no field 'answer'" in message

    choices = {
        "data_source_config": {"type": "custom", "item_schema": {"type": "object"}},
        "testing_criteria": [
            {
                "type": "multiple_choice",
                "name": "mmlu",
                "input": [{"role": "user", "content": "{{item.input}}"}],
                "choices": "{{item.choices}}",
                "answer": "{{item.reference}}",
            }
        ],
    }
    multiple = client.post("/api/v1/evals", json=choices).json()["id"]
    assert "not a list of at least two choices" in refused(client, tiny_model, file_id, [multiple])["message"]
    assert client.get("/api/v1/fine_tuning/jobs").json()["data"] == []  # nothing half-made


def test_a_jobs_evals_are_queued_on_each_checkpoint_as_it_is_saved_and_on_its_adapter(
    client: TestClient, tiny_model: str
) -> None:
    eval_id = client.post("/api/v1/evals", json=ON_VALIDATION_ROWS).json()["id"]
    file_id = upload(client, INSTRUCTION_ROWS)
    job_id = create_job(client, tiny_model, file_id, hp={"save_steps": 4}, evals=[eval_id, eval_id])
    job = client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()
    assert job["evals"] == [eval_id]  # named twice, run once

    assert run_job(job_id) == "succeeded"
    steps = sorted(
        c["step_number"] for c in client.get(f"/api/v1/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]
    )
    assert len(steps) >= 2
    runs = client.get(f"/api/v1/evals/{eval_id}/runs", params={"order": "asc"}).json()["data"]
    models = [r["model"] for r in runs]
    for step in steps:
        assert f"{tiny_model}:{job_id}:ckpt-{step}" in models
    assert models[-1] == f"{tiny_model}:{job_id}"  # the adapter, when the job ended
    assert {r["status"] for r in runs} == {"queued"}  # for the short lane, not the training worker
    first = runs[0]
    assert first["data_source"]["source"] == {"type": "job_validation", "job_id": job_id}
    assert first["data_source"]["sampling_params"]["temperature"] == 0
    assert first["result_counts"]["total"] > 0
    log = events(client, job_id)
    assert f"Queued evals {eval_id} on step {steps[0]}" in log
    assert f"Queued evals {eval_id} on final adapter" in log


def test_the_job_form_names_evals_for_each_checkpoint(client: TestClient, tiny_model: str) -> None:
    good = client.post("/api/v1/evals", json=ON_VALIDATION_ROWS).json()["id"]
    wrong = {**ON_VALIDATION_ROWS, "name": "needs an answer field"}
    wrong["testing_criteria"] = [
        {**ON_VALIDATION_ROWS["testing_criteria"][0], "reference": "{{item.answer}}"}
    ]
    bad = client.post("/api/v1/evals", json=wrong).json()["id"]
    file_id = upload(client, INSTRUCTION_ROWS)
    page = client.get("/jobs/new").text
    assert 'id="f-evals"' in page and f'value="{good}"' in page and "rouge on the answers" in page

    form = {"model": tiny_model, "training_file": file_id, "evals": [good, bad]}
    refused = client.post("/jobs", data=form)
    assert refused.status_code == 422 and "Please fix 1 field" in refused.text
    assert f"eval {bad} cannot grade this job&#39;s validation rows" in refused.text
    assert re.search(rf'value="{good}" checked', refused.text)  # the form keeps what was picked

    made = client.post("/jobs", data={**form, "evals": [good]}, follow_redirects=False)
    assert made.status_code == 303, made.text
    job_id = made.headers["location"].removeprefix("/jobs/")
    assert client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()["evals"] == [good]
    page = client.get(f"/jobs/{job_id}").text
    assert 'id="job-evals"' in page and f'href="/evals/{good}"' in page
