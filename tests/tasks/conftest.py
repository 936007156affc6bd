"""Fixtures for the SEQ_CLS and SEQ_2_SEQ_LM tests: tiny T5 and BERT bases, uploads, jobs."""

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import upload  # noqa: F401  (the tests of this folder take it from here)
from tests.tiny_model import build_tiny_bert, build_tiny_t5

QUICK = {
    "batch_size": 4,
    "gradient_accumulation_steps": 1,
    "logging_steps": 1,
    "max_seq_length": 64,
    "gradient_checkpointing": False,
}


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return build_tiny_t5(tmp_path_factory.mktemp("tiny-t5"), tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), tiny_model_dir)


def register(name: str, folder: Path) -> str:
    from app.basemodels.service import register_model
    from app.core.db import session_scope

    with session_scope() as session:
        register_model(session=session, name=name, folder=folder)
    return name


@pytest.fixture
def tiny_t5(configured: Path, tiny_t5_dir: Path) -> str:
    """The tiny T5 registered as base model ``tiny-t5``."""
    return register("tiny-t5", tiny_t5_dir)


def create_job(client: TestClient, model: str, file_id: str, **hp: object) -> str:
    body = {"model": model, "training_file": file_id, "hyperparameters": {**QUICK, **hp}}
    response = client.post("/api/v1/fine_tuning/jobs", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def advice(client: TestClient, model: str, file_id: str, **extra: Any) -> dict[str, Any]:
    body = {"model": model, "training_file": file_id, "hyperparameters": extra.pop("hp", {}), **extra}
    response = client.post("/api/v1/fine_tuning/jobs/advice", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def metrics(client: TestClient, job_id: str, key: str) -> list[float]:
    data = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/metrics").json()["data"]
    return [point["value"] for point in data if point["key"] == key]


def run_fresh(script: str, *args: str) -> Any:
    """Run ``script`` in a new Python process (nothing shared with this one); its last stdout line is JSON."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
