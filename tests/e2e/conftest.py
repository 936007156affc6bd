"""Shared real-process instances for the end-to-end tests."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.support import Instance


@pytest.fixture
def services(
    tmp_path: Path, tiny_model_dir: Path, postgres_database: str, redis_url: str
) -> Iterator[Instance]:
    """The same command on Postgres + Redis."""
    env = {
        "DATABASE_URL": postgres_database,
        "REDIS_URL": redis_url,
        "TUNEDECK_QUEUE": f"e2e-{uuid.uuid4().hex[:8]}",
    }
    instance = Instance(tmp_path / "data", env)
    instance.cli(
        "models", "register", "--data-dir", str(instance.data_dir), "tiny-llama", str(tiny_model_dir)
    )
    yield instance.start()
    instance.stop()
