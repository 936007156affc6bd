"""The server errors schemathesis found (test_schemathesis.py), each pinned as a 4xx with a
message: integers past what the database stores, and names too long for the file system."""

from pathlib import Path

from fastapi.testclient import TestClient

from tests.factories import INSTRUCTION_ROWS, create_job, upload

HUGE = str(2**63)  # one past the largest integer SQLite and Postgres store


def test_integers_past_the_database_range_are_422(client: TestClient, tiny_model: str) -> None:
    job_id = create_job(client, tiny_model, upload(client, INSTRUCTION_ROWS[:12]))
    for path, params in [
        ("/api/v1/audit", {"before": HUGE}),
        ("/api/v1/files", {"offset": HUGE}),
        (f"/api/v1/fine_tuning/jobs/{job_id}/metrics", {"after_id": HUGE}),
    ]:
        answer = client.get(path, params=params)
        assert answer.status_code == 422, (path, answer.text)
        assert "less than or equal to 9223372036854775807" in answer.json()["error"]["message"]
    events = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/events", params={"after": "ftevent-" + HUGE * 2})
    assert events.status_code == 200 and events.json()["data"]  # a cursor past every event: all of them


def test_a_model_path_too_long_for_the_file_system_is_400(client: TestClient, configured: Path) -> None:
    answer = client.post("/api/v1/models", json={"name": "long", "path": "0" * 1000})
    assert answer.status_code == 400 and "TUNEDECK_MODEL_ROOTS" in answer.json()["error"]["message"]
