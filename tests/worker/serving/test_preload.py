"""Cold start: the model server loads ``serve_preload``'s models as it starts, before any request,
and says for each model whether it answers at once ("ready") or loads first ("cold", "loading")."""

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import get_settings
from tests.accounts import bearer
from worker.serving.app import create_app
from worker.serving.engine import Engine


def test_the_model_server_loads_its_preload_models_as_it_starts(
    tiny_model: str, admin_key: str, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNEDECK_SERVE_PRELOAD", f"{tiny_model}, not-registered")
    get_settings.cache_clear()
    engine = Engine()
    try:
        with TestClient(create_app(engine), headers=bearer(admin_key)) as server:
            deadline = time.monotonic() + 60
            while (state := server.get(f"/v1/tunedeck/models/{tiny_model}/state").json()["state"]) != "ready":
                assert state in ("cold", "loading") and time.monotonic() < deadline, state
                time.sleep(0.1)
            assert engine.stats["requests"] == 0  # loaded before anyone asked
            health = server.get("/healthz").json()
            assert tiny_model in health["loaded"] and health["loading"] == []
            missing = server.get("/v1/tunedeck/models/tiny-llama:ftjob-nope/state")
            assert missing.status_code == 404 and "does not exist" in missing.json()["error"]["message"]
    finally:
        get_settings.cache_clear()

    monkeypatch.setenv("TUNEDECK_SERVE_PRELOAD", "")
    with TestClient(create_app(Engine()), headers=bearer(admin_key)) as cold:
        assert cold.get(f"/v1/tunedeck/models/{tiny_model}/state").json()["state"] == "cold"
    get_settings.cache_clear()
