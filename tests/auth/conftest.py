"""A team of three plus an admin, each with an API key, on a fresh database."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.accounts import bearer, make_user
from tests.factories import INSTRUCTION_ROWS, upload


@dataclass
class Team:
    admin: TestClient
    alice: TestClient  # member
    bob: TestClient  # member
    vera: TestClient  # viewer
    keys: dict[str, str]


@pytest.fixture
def team(client: TestClient, admin_key: str, configured: Path) -> Iterator[Team]:
    from app.main import create_app

    keys = {"admin": admin_key}
    for name, role in (("alice", "member"), ("bob", "member"), ("vera", "viewer")):
        keys[name] = make_user(name, role)
    clients = {
        name: TestClient(create_app(), headers=bearer(key)) for name, key in keys.items() if name != "admin"
    }
    for each in clients.values():
        each.__enter__()
    yield Team(admin=client, keys=keys, **clients)
    for each in clients.values():
        each.__exit__(None, None, None)


@pytest.fixture
def private_job(team: Team, tiny_model: str) -> dict[str, str]:
    """Alice's private dataset and a private job on it (queued: no worker runs in these tests)."""
    file_id = upload(team.alice, INSTRUCTION_ROWS[:12], private="true")
    created = team.alice.post(
        "/api/v1/fine_tuning/jobs",
        json={
            "model": tiny_model,
            "training_file": file_id,
            "private": True,
            "hyperparameters": {"n_epochs": 1},
        },
    )
    assert created.status_code == 200, created.text
    return {"file": file_id, "job": created.json()["id"]}
