"""The HTML pages render, the forms work without JavaScript, and user text is escaped."""

import re

from fastapi.testclient import TestClient

from tests.factories import upload


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
    from app.core.spec import TrainingSpec

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


def test_dataset_page_shows_the_cleaning_report_and_the_form_makes_a_version(
    client: TestClient, tiny_model: str
) -> None:
    rows = [{"instruction": f"Question {i}?", "output": f"The answer is {i}."} for i in range(12)]
    rows += [
        {"instruction": "QUESTION 3", "output": "the answer is 3"},
        {"instruction": "Say yes", "output": "Yes"},
        {"instruction": "<script>alert(1)</script>", "output": "The cafÃ© is <b>nice</b>."},
    ]
    file_id = upload(client, rows)
    page = client.get(f"/datasets/{file_id}").text
    assert (
        "Cleaning report" in page
        and "version 1" in page
        and 'action="/datasets/' + file_id + '/clean"' in page
    )
    for name, count in (("near_duplicates", 1), ("short_outputs", 1), ("mojibake", 1), ("too_long", 0)):
        assert f'<span data-count="{name}">{count}</span>' in page, name
        assert f'name="filters" value="{name}"' in page, name
    assert "meant &#39;é&#39;" in page and "same as train[" in page
    assert "<script>alert(1)" not in page and "<b>nice</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;nice&lt;/b&gt;" in page

    form = {"filters": ["near_duplicates", "short_outputs", "mojibake"], "too_long": "truncate"}
    response = client.post(f"/datasets/{file_id}/clean", data=form, follow_redirects=False)
    assert response.status_code == 303
    version_page = client.get(response.headers["location"])
    assert version_page.status_code == 200
    text = version_page.text
    assert "version 2" in text and f'cleaned from <a href="/datasets/{file_id}">d.jsonl</a>' in text
    assert "d.jsonl (clean v2)" in text and "<code>mojibake</code>: 1" in text
    version_id = response.headers["location"].removeprefix("/datasets/")
    assert f'href="/datasets/{version_id}">d.jsonl (clean v2)</a>' in client.get(f"/datasets/{file_id}").text


def test_cleaning_form_errors_are_shown_on_the_page(client: TestClient) -> None:
    file_id = upload(client, [{"instruction": f"q{i}", "output": "a"} for i in range(5)])
    nothing = client.post(f"/datasets/{file_id}/clean", data={"too_long": "truncate"})
    assert nothing.status_code == 422 and "No version was made" in nothing.text
    assert "choose at least one filter" in nothing.text and "Cleaning report" in nothing.text
    empty = client.post(f"/datasets/{file_id}/clean", data={"filters": "short_outputs"})
    assert empty.status_code == 422 and "would leave no training rows" in empty.text
    assert client.get("/api/v1/files").json()["total"] == 1
