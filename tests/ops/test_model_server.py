"""The model server's /metrics (requests, tokens, generation speed, what is loaded), /livez and
/readyz, on the real server app and engine with the tiny Llama."""

from pathlib import Path

from fastapi.testclient import TestClient

from tests.accounts import bearer
from tests.ops.conftest import LOOPBACK, value


def test_model_server_counts_generations_and_is_ready(tiny_model: str, admin_key: str) -> None:
    from worker.serving.app import create_app

    with TestClient(create_app(), client=LOOPBACK) as server:
        assert server.get("/livez").json() == {"status": "ok"}
        ready = server.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["base_models"] == {tiny_model: True}
        body = {"model": tiny_model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6}
        chat = server.post("/v1/chat/completions", json=body | {"temperature": 0}, headers=bearer(admin_key))
        assert chat.status_code == 200, chat.text
        tokens = chat.json()["usage"]["completion_tokens"]
        text = server.get("/metrics").text
    assert value(text, "tunedeck_serve_requests_total") == 1
    assert value(text, "tunedeck_serve_completion_tokens_total") == tokens
    assert value(text, "tunedeck_serve_loaded_base_models") == 1
    assert value(text, "tunedeck_serve_loaded_adapters") == 0
    assert value(text, "tunedeck_serve_generation_tokens_per_second_count") == (1 if tokens > 1 else 0)
    post = {"route": "/v1/chat/completions", "method": "POST", "status": "200"}
    assert value(text, "tunedeck_http_requests_total", **post) == 1


def test_model_server_is_not_ready_without_its_model_folders(configured: Path) -> None:
    from app.core.db import session_scope
    from app.core.tables import BaseModelRecord
    from worker.serving.app import create_app

    with session_scope() as session:
        session.add(BaseModelRecord(id="gone-model", path=str(configured / "not-mounted")))
    with TestClient(create_app()) as server:
        answer = server.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["failed"] == ["base_models"] and "gone-model" in answer.text
        assert server.get("/metrics").status_code == 403  # not loopback, and no token set
