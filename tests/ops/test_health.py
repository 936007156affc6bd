"""/livez answers without touching anything; /readyz names the dependency that is down."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import get_settings
from tests.e2e.support import free_port
from tests.ops.conftest import LOOPBACK


def test_livez_and_readyz_answer_without_login(anonymous: TestClient) -> None:
    assert anonymous.get("/livez").json() == {"status": "ok"}
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok"}}
    assert anonymous.get("/healthz").json() == {"status": "ok"}  # unchanged


def _app_without_lifespan() -> TestClient:
    """The app as configured now, seen from loopback; no lifespan, so nothing starts in the background."""
    from app.main import create_app

    get_settings.cache_clear()
    return TestClient(create_app(), client=LOOPBACK)


def test_readyz_names_a_dead_database(configured: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://tunedeck:pw@127.0.0.1:{free_port()}/tunedeck")
    client = _app_without_lifespan()
    assert client.get("/livez").status_code == 200  # alive all the same: no restart for this
    answer = client.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable" and body["failed"] == ["database"]
    assert "OperationalError" in body["checks"]["database"] and "pw" not in answer.text
    remote = TestClient(client.app).get("/readyz").json()  # not loopback: names only, no details
    assert remote["failed"] == ["database"] and remote["checks"] == {"database": "failed", "storage": "ok"}


def test_readyz_says_when_the_schema_is_behind(configured: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{configured / 'not-migrated.db'}")
    body = _app_without_lifespan().get("/readyz").json()
    assert body["failed"] == ["database"] and "tunedeck migrate" in body["checks"]["database"]


def test_readyz_checks_redis_when_it_is_the_broker(configured: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    answer = _app_without_lifespan().get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["failed"] == ["broker"] and answer.json()["checks"]["database"] == "ok"
