"""Broken uploads through the dashboard's upload form: a 422 page naming the line, and nothing
stored. (The same files over the REST API: tests/datasets/test_api.py; parsing: test_parsing.py.)"""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from tests.security.conftest import assert_nothing_stored

BROKEN = [
    (
        "invalid-utf8",
        "d.jsonl",
        b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff", "output": "b"}\n',
        2,
    ),
    ("broken-json", "d.jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": "a", "output"\n', 2),
    ("broken-json-array", "d.json", b'[{"instruction": "a", "output": "b"},\n{"instruction" "a"}]', 2),
    ("broken-csv", "d.csv", b'instruction,input,output\na,,b\n"never closed,,c\n', 3),
    ("csv-missing-column", "d.csv", b"instruction,input\na,b\n", 1),
    ("missing-field", "d.jsonl", b'{"instruction": "a", "output": "b"}\n{"output": "b"}\n', 2),
    ("empty-file", "d.jsonl", b"", 0),
]


def test_the_upload_form_refuses_broken_files_with_the_line_and_stores_nothing(
    client: TestClient, configured: Path
) -> None:
    for case, name, data, line in BROKEN:
        page = client.post(
            "/datasets",
            files={"file": (name, data)},
            data={"validation_split": "0.1"},
            headers={"Accept": "text/html"},
        )
        assert page.status_code == 422 and page.headers["content-type"].startswith("text/html"), case
        assert (f"line {line}" if line else "the file is empty") in page.text, (case, page.text)
        assert_nothing_stored(configured)


# What a hostile probe sent that got a 500 (nothing stored, but no message either): now each is a
# 4xx that says what to fix, over the API and the upload form, and still nothing is stored.
NASTY_ROWS = [
    ("nested-100k-deep-array", "d.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (
        "nested-100k-deep-row",
        "d.jsonl",
        b'{"instruction": "a", "output": "b", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
        "nested too deeply",
    ),
    ("lone-surrogate", "d.jsonl", b'{"instruction": "a\\ud800", "output": "b"}\n', "lone surrogate"),
    (
        "lone-surrogate-in-chat",
        "d.json",
        b'[{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\\udfff"}]}]',
        "messages[1].content",
    ),
    (
        "5000-digit-integer",
        "d.jsonl",
        b'{"instruction": "a", "output": "b", "n": ' + b"7" * 5000 + b"}\n",
        "more than 4300 digits",
    ),
    (
        "5000-digit-integer-in-array",
        "d.json",
        b'[{"instruction": "a", "output": "b", "n": ' + b"7" * 5000 + b"}]",
        "more than 4300 digits",
    ),
]


@pytest.mark.parametrize("case, name, data, says", NASTY_ROWS, ids=[c[0] for c in NASTY_ROWS])
def test_files_that_gave_a_500_get_a_422_saying_why(
    client: TestClient, configured: Path, case: str, name: str, data: bytes, says: str
) -> None:
    api = client.post("/api/v1/files", files={"file": (name, data)}, data={"purpose": "fine-tune"})
    assert api.status_code == 422, (case, api.status_code, api.text[:300])
    assert says in api.json()["error"]["message"] and "line 1" in api.json()["error"]["message"]
    page = client.post("/datasets", files={"file": (name, data)}, headers={"Accept": "text/html"})
    assert page.status_code == 422 and says in page.text, case
    assert_nothing_stored(configured)


def test_a_split_seed_beyond_what_the_database_holds_is_a_422(client: TestClient, configured: Path) -> None:
    rows = b'{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n'
    for seed in ("1" * 30, "-1", "2147483648"):
        api = client.post("/api/v1/files", files={"file": ("d.jsonl", rows)}, data={"split_seed": seed})
        assert api.status_code == 422 and api.json()["error"]["param"] == "split_seed", (seed, api.text)
        page = client.post(
            "/datasets",
            files={"file": ("d.jsonl", rows)},
            data={"split_seed": seed},
            headers={"Accept": "text/html"},
        )
        assert page.status_code == 422 and "split_seed" in page.text, seed
    page = client.post(
        "/datasets",
        files={"file": ("d.jsonl", rows)},
        data={"split_seed": "1e30"},
        headers={"Accept": "text/html"},
    )
    assert page.status_code == 422 and "must be a whole number" in page.text
    assert_nothing_stored(configured)
    assert client.post(
        "/api/v1/files", files={"file": ("d.jsonl", rows)}, data={"split_seed": "2147483647"}
    ).is_success


@pytest.mark.parametrize(
    "path",
    [
        "/jobs?page=1e30",
        "/jobs?page=" + "9" * 30,
        "/jobs?page=-5",
        "/admin/audit?before=1e24",
        "/admin/audit?before=" + "9" * 24,
        "/api/v1/audit?before=" + "9" * 24,
        "/datasets/file-nope/rows?page=" + "9" * 30,
    ],
)
def test_page_and_cursor_numbers_beyond_any_database_are_a_4xx(client: TestClient, path: str) -> None:
    answer = client.get(path, headers={"Accept": "text/html"})
    assert 400 <= answer.status_code < 500, (path, answer.status_code)
    assert "page" in answer.text or "before" in answer.text or "no file" in answer.text


def test_the_job_form_validates_like_the_api(client: TestClient, tiny_model: str) -> None:
    """A 100 KB suffix with NUL and markup was stored from the form (the API refused it)."""
    from tests.factories import upload

    file_id = upload(client, [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(12)])
    suffix = "<b>x</b>\x00" + "y" * 100_000
    form = {"model": tiny_model, "training_file": file_id, "suffix": suffix, "n_epochs": "1"}
    page = client.post("/jobs", data=form, headers={"Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 422 and 'href="#f-suffix"' in page.text, page.text[:500]
    assert "<b>x</b>" not in page.text  # shown escaped, if at all
    for seed, priority in (("99999999999999999999", "5"), ("1", "12")):
        form = {"model": tiny_model, "training_file": file_id, "seed": seed, "priority": priority}
        assert client.post("/jobs", data=form, follow_redirects=False).status_code == 422, (seed, priority)
    assert client.get("/api/v1/fine_tuning/jobs").json()["data"] == []
    ok = client.post("/jobs", data={**form, "seed": "7", "priority": "5"}, follow_redirects=False)
    assert ok.status_code == 303


def test_a_job_being_merged_cannot_be_deleted(client: TestClient, configured: Path) -> None:
    """Deleting a job while its merge ran was accepted and crashed the merge task."""
    from app.core.db import session_scope
    from app.core.ids import new_id
    from app.core.tables import Job, JobStatus, Merge

    with session_scope() as session:
        job = Job(id=new_id("ftjob"), model="tiny-llama", training_file="file-x", status=JobStatus.succeeded)
        job.adapter_key = f"jobs/{job.id}/adapter"
        session.add(job)
        session.flush()
        session.add(Merge(id=new_id("merge"), job_id=job.id, status="running"))
    url = f"/api/v1/fine_tuning/jobs/{job.id}"
    refused = client.delete(url)
    assert refused.status_code == 409 and "merge/cancel" in refused.json()["error"]["message"]
    page = client.post(f"/jobs/{job.id}/delete", headers={"Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 409 and client.get(url).status_code == 200
    client.post(url + "/merge/cancel").raise_for_status()  # running → cancelling: still under way
    assert client.delete(url).status_code == 409
    with session_scope() as session:  # the worker stopped it
        merge = session.exec(select(Merge).where(Merge.job_id == job.id)).one()
        merge.status = "cancelled"
    assert client.delete(url).status_code == 200 and client.get(url).status_code == 404
