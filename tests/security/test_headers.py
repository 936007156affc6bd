"""The security headers hold on error answers too (401, 403, 404, 413, 422, 500), the model server sends
them as well, and every server command binds to 127.0.0.1 unless told otherwise.
(Pages and API answers: tests/core/test_security_headers.py.)"""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.cli import build_parser
from tests.accounts import bearer, make_user


def assert_locked_down(response: object, where: str) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["x-content-type-options"] == "nosniff", where
    assert headers["x-frame-options"] == "DENY", where
    assert "frame-ancestors 'none'" in headers["content-security-policy"], where


def test_error_answers_carry_the_security_headers(
    client: TestClient, anonymous: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.core.config import get_settings

    viewer = TestClient(client.app, headers=bearer(make_user("vera", "viewer")))
    answers = {
        "401 api": anonymous.get("/api/v1/fine_tuning/jobs"),
        "303 page": anonymous.get("/jobs", headers={"Accept": "text/html"}, follow_redirects=False),
        "403": viewer.post("/api/v1/presets", json={"name": "x", "hyperparameters": {}}),
        "404 api": client.get("/api/v1/files/file-nope"),
        "404 page": client.get("/jobs/ftjob-nope", headers={"Accept": "text/html"}),
        "404 route": client.get("/no/such/route"),
        "422": client.get("/api/v1/fine_tuning/jobs", params={"limit": "lots"}),
    }
    monkeypatch.setenv("TUNEDECK_MAX_UPLOAD_BYTES", "1000")
    get_settings.cache_clear()
    answers["413 declared"] = client.post(
        "/api/v1/files", files={"file": ("big.jsonl", b"x" * 200_000)}, data={"purpose": "fine-tune"}
    )
    answers["413 file"] = client.post(
        "/api/v1/files", files={"file": ("big.jsonl", b"x" * 5_000)}, data={"purpose": "fine-tune"}
    )
    for where, answer in answers.items():
        assert answer.status_code == int(where[:3]), (where, answer.status_code)
        assert_locked_down(answer, where)
    assert "1000 bytes upload limit" in answers["413 declared"].json()["error"]["message"]


def test_an_unhandled_error_is_a_500_with_the_security_headers_and_no_traceback(client: TestClient) -> None:
    from app.main import create_app

    app = create_app()

    def broken() -> None:
        raise RuntimeError("secret internals /srv/tunedeck/db.sqlite")

    app.add_api_route("/api/v1/broken", broken)
    with TestClient(app, raise_server_exceptions=False) as server:
        answer = server.get("/api/v1/broken")
    assert answer.status_code == 500
    assert_locked_down(answer, "500")
    assert answer.json()["error"]["type"] == "server_error"
    assert "secret internals" not in answer.text and "Traceback" not in answer.text


def test_the_model_server_sends_nosniff_and_no_framing(configured: Path) -> None:
    from worker.serving.app import create_app

    with TestClient(create_app()) as server:
        for answer in (server.get("/healthz"), server.get("/v1/models"), server.get("/nope")):
            assert answer.headers["x-content-type-options"] == "nosniff", answer.url
            assert answer.headers["x-frame-options"] == "DENY", answer.url
        assert server.get("/v1/models").status_code == 401


def test_every_server_command_binds_to_localhost_by_default() -> None:
    parser = build_parser()
    for command in ("run", "web", "serve"):
        assert parser.parse_args([command]).host == "127.0.0.1", command
    assert parser.parse_args(["run"]).port == 8000 and parser.parse_args(["serve"]).port == 8001
