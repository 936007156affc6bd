"""Secrets never show up where people and programs read: an instance with HF_TOKEN in its
environment trains a job, an admin logs in with a password, a script uses an API key, someone
fails to log in; then neither the key, the password (right or wrong), the HF token nor the
session cookie appears in the log, the job's events, the audit log, error answers or any file in
the data dir."""

import contextlib
import re

import httpx
import pytest

from tests.accounts import PASSWORD
from tests.e2e.support import HF_TOKEN, Instance
from tests.security.conftest import FinishedJob

pytestmark = pytest.mark.slow

WRONG_PASSWORD = "not-the-" + PASSWORD


def test_no_secret_appears_in_logs_events_audit_errors_or_files(
    instance: Instance, finished_job: FinishedJob
) -> None:
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=instance.url, timeout=30) as browser:
        login = {"username": "admin", "password": PASSWORD, "next": "/jobs"}
        answers.append(browser.post("/login", data=login))
        cookie = browser.cookies["tunedeck_session"]
        assert len(cookie) > 20
        page = browser.get(f"/jobs/{finished_job.id}")
        assert page.status_code == 200
        token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        answers.append(browser.post("/api/v1/presets", json={"name": "x"}, headers={"X-CSRF-Token": "wrong"}))
        answers.append(browser.post(f"/jobs/{finished_job.id}/cancel", data={"csrf_token": token}))
    with httpx.Client(base_url=instance.url, timeout=30) as stranger:
        answers.append(stranger.post("/login", data={"username": "admin", "password": WRONG_PASSWORD}))
        answers.append(
            stranger.get("/api/v1/fine_tuning/jobs", headers={"Authorization": f"Bearer {instance.api_key}x"})
        )
        answers.append(stranger.get("/api/v1/me", headers={"Authorization": f"Basic {instance.api_key}"}))
        answers.append(stranger.get("/api/v1/me", cookies={"tunedeck_session": cookie + "x"}))
    assert answers[3].status_code == 401 and answers[4].status_code == 401
    with instance.client() as client:
        answers.append(client.get("/api/v1/files/nope"))
        answers.append(
            client.post("/api/v1/fine_tuning/jobs", json={"model": "nope", "training_file": "nope"})
        )
        events = client.get(f"/api/v1/fine_tuning/jobs/{finished_job.id}/events", params={"limit": 1000}).text
        audit = client.get("/api/v1/audit", params={"limit": 1000}).text
        job = client.get(f"/api/v1/fine_tuning/jobs/{finished_job.id}").text
    assert "login_failed" in audit and "login" in audit and finished_job.id in events

    secrets = {
        "API key": instance.api_key,
        "password": PASSWORD,
        "wrong password": WRONG_PASSWORD,
        "HF token": HF_TOKEN,
        "session cookie": cookie,
    }
    places = {
        "instance log": instance.log_path.read_text(errors="replace"),
        "job events": events,
        "audit log": audit,
        "job": job,
        # (the login answer's Set-Cookie header is where the cookie belongs)
        **{f"answer {i} ({a.status_code})": a.text + str(a.headers) for i, a in enumerate(answers) if i},
        "login answer": answers[0].text,
    }
    files = [p for p in instance.data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "tunedeck.db" for p in files)
    for name, secret in secrets.items():
        for where, text in places.items():
            assert secret not in text, f"the {name} appears in the {where}"
        for path in files:
            with contextlib.suppress(FileNotFoundError):  # a broker message consumed meanwhile
                assert secret.encode() not in path.read_bytes(), f"the {name} appears in {path}"
