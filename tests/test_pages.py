"""The HTML pages render, the forms work without JavaScript, and user text is escaped."""

import json
import re

from fastapi.testclient import TestClient


def upload(client: TestClient, rows: list[dict[str, str]]) -> str:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return client.post("/api/v1/files", files={"file": ("d.jsonl", data)}).json()["id"]


def test_every_page_renders(client: TestClient, tiny_model: str) -> None:
    file_id = upload(client, [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(30)])
    job_id = client.post(
        "/api/v1/fine_tuning/jobs", json={"model": tiny_model, "training_file": file_id}
    ).json()["id"]
    for path in (
        "/",
        "/jobs",
        "/jobs?status=queued",
        "/jobs/new",
        "/datasets",
        f"/datasets/{file_id}",
        f"/datasets/{file_id}/rows?split=validation",
        "/models",
        f"/jobs/{job_id}",
        "/docs",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
    job_page = client.get(f"/jobs/{job_id}").text
    assert "queued" in job_page and "Cancel job" in job_page and 'id="chart"' in job_page
    dataset_page = client.get(f"/datasets/{file_id}").text
    assert "truncated at 1024" in dataset_page and "page 1 of 2" in dataset_page


def test_new_job_form_shows_every_spec_field_with_its_help(client: TestClient, tiny_model: str) -> None:
    from app.spec import TrainingSpec

    page = client.get("/jobs/new").text
    for name, info in TrainingSpec.model_fields.items():
        assert f'name="{name}"' in page, name
        assert str(info.description).replace("'", "&#39;") in page, name
    assert re.search(r'name="r"[^>]*value="8"', page) and re.search(
        r'name="learning_rate"[^>]*value="0.0001"', page
    )


def test_form_submission_creates_job_and_errors_are_shown(client: TestClient, tiny_model: str) -> None:
    file_id = upload(client, [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(10)])
    form = {
        "model": tiny_model,
        "training_file": file_id,
        "r": "16",
        "lora_alpha": "32",
        "learning_rate": "0.0002",
        "gradient_checkpointing": ["false", "true"],
        "target_modules": "attention+mlp",
        "seed": "7",
    }
    response = client.post("/jobs", data=form, follow_redirects=False)
    assert response.status_code == 303
    job = client.get("/api/v1/fine_tuning/jobs" + response.headers["location"].removeprefix("/jobs")).json()
    assert (job["hyperparameters"]["r"], job["hyperparameters"]["lora_alpha"], job["seed"]) == (16, 32, 7)
    assert job["hyperparameters"]["gradient_checkpointing"] is True
    assert job["hyperparameters"]["target_modules"] == "attention+mlp"
    bad = client.post("/jobs", data={**form, "r": "0", "gradient_checkpointing": "false"})
    assert (
        bad.status_code == 422
        and "Please fix 1 field" in bad.text
        and "greater than or equal to 1" in bad.text
    )


def test_bad_upload_from_the_page_lists_problems(client: TestClient) -> None:
    bad = b'{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n'
    response = client.post("/datasets", files={"file": ("d.jsonl", bad)}, headers={"accept": "text/html"})
    assert response.status_code == 422 and "Nothing was stored" in response.text and "line 2" in response.text


def test_user_text_is_escaped(client: TestClient, tiny_model: str) -> None:
    file_id = upload(
        client,
        [{"instruction": "<script>alert(1)</script>", "output": "<img src=x onerror=alert(2)>"}] * 1
        + [{"instruction": f"q{i}", "output": "a"} for i in range(20)],
    )
    page = (
        client.get(f"/datasets/{file_id}/rows?split=train&page=1").text
        + client.get(f"/datasets/{file_id}/rows?split=validation").text
    )
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_html_404_page(client: TestClient) -> None:
    response = client.get("/jobs/ftjob-nope", headers={"accept": "text/html"})
    assert response.status_code == 404 and "no fine-tuning job" in response.text and "<html" in response.text
