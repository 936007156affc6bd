"""A write that rides on the session cookie needs the session's CSRF token (from the page's
`<meta name="csrf-token">` or the form's hidden field): without it, 403 and nothing changes.
API keys need none (a browser never adds an Authorization header by itself). The same attack
from a real browser on another origin: test_browser_attacks.py."""

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.accounts import PASSWORD
from tests.factories import INSTRUCTION_ROWS, create_job, upload

CSRF_MESSAGE = "the form's CSRF token is missing or out of date"


def test_cookie_writes_need_the_csrf_token(
    client: TestClient, anonymous: TestClient, tiny_model: str, configured: Path
) -> None:
    file_id = upload(client, INSTRUCTION_ROWS[:12])
    job_id = create_job(client, tiny_model, file_id)  # queued: no worker runs here
    new_job = {"model": tiny_model, "training_file": file_id, "hyperparameters": {"n_epochs": 1}}
    logged_in = anonymous.post(
        "/login", data={"username": "admin", "password": PASSWORD}, follow_redirects=False
    )
    assert logged_in.status_code == 303 and "tunedeck_session" in anonymous.cookies

    for token in (None, "made-up-token", ""):
        form = {"csrf_token": token} if token is not None else {}
        headers = {"X-CSRF-Token": token} if token else {}
        attempts = [
            anonymous.post(f"/jobs/{job_id}/cancel", data=form, follow_redirects=False),
            anonymous.post(f"/api/v1/fine_tuning/jobs/{job_id}/cancel", headers=headers),
            anonymous.post("/api/v1/fine_tuning/jobs", json=new_job, headers=headers),
            anonymous.post("/api/v1/files", files={"file": ("d.jsonl", b"{}")}, data=form),
        ]
        for answer in attempts:
            assert answer.status_code == 403, (answer.request.url, answer.text)
            assert CSRF_MESSAGE in answer.text
    listed = client.get("/api/v1/fine_tuning/jobs").json()["data"]
    assert [j["id"] for j in listed] == [job_id] and not listed[0]["cancel_requested"]

    page = anonymous.get(f"/jobs/{job_id}").text
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    field = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert meta == field
    created = anonymous.post("/api/v1/fine_tuning/jobs", json=new_job, headers={"X-CSRF-Token": meta})
    assert created.status_code == 200, created.text
    cancelled = anonymous.post(f"/jobs/{job_id}/cancel", data={"csrf_token": field}, follow_redirects=False)
    assert cancelled.status_code == 303
    assert client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()["status"] == "cancelled"
    # a bearer request needs no token
    assert client.post(f"/api/v1/fine_tuning/jobs/{created.json()['id']}/cancel").status_code == 200
