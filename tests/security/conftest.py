"""Shared parts for the attack tests: what "nothing was stored" means, and a real instance whose
environment holds a secret (an HF token) that must never show up anywhere."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import pytest
from sqlmodel import select

from tests.e2e.support import Instance, wait_for
from tests.factories import INSTRUCTION_ROWS

# Names and cells a shell or a browser would run, if anything ever passed them to one.
SHELL_NAME = "$(touch /tmp/pwned-tunedeck); rm -rf x `touch /tmp/pwned-tunedeck2`.jsonl"
SCRIPT = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
QUICK_JOB = {"n_epochs": 1, "batch_size": 4, "gradient_accumulation_steps": 1, "learning_rate": 5e-3}
QUICK_JOB |= {"logging_steps": 1, "max_seq_length": 128, "gradient_checkpointing": False}


def stored_files(data_dir: Path) -> list[Path]:
    """Every file under the artifacts dir (empty folders left by a rollback don't count)."""
    root = data_dir / "artifacts"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def dataset_rows() -> int:
    from app.core.db import read_session
    from app.core.tables import DatasetFile

    with read_session() as session:
        return len(session.exec(select(DatasetFile)).all())


def assert_nothing_stored(data_dir: Path) -> None:
    assert dataset_rows() == 0, "a refused upload left a row in `files`"
    assert stored_files(data_dir) == [], "a refused upload left files in the artifacts dir"


@pytest.fixture(scope="package")
def instance(embedded: Instance) -> Instance:
    """The test process's shared `tunedeck run` (web, worker, model server; the tiny Llama
    registered), whose environment holds HF_TOKEN."""
    return embedded


@dataclass
class FinishedJob:
    id: str
    file_id: str
    filename: str


@pytest.fixture(scope="package")
def finished_job(instance: Instance) -> FinishedJob:
    """A job trained to the end on a dataset whose name is shell code and whose cells are script."""
    rows = [{**row, "input": SCRIPT} if i % 5 == 0 else row for i, row in enumerate(INSTRUCTION_ROWS)]
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    with instance.client() as client:
        uploaded = client.post(
            "/api/v1/files", files={"file": (SHELL_NAME, data)}, data={"purpose": "fine-tune"}
        )
        assert uploaded.status_code == 200, uploaded.text
        file_id = uploaded.json()["id"]
        body = {
            "model": "tiny-llama",
            "training_file": file_id,
            "suffix": "safe",
            "hyperparameters": QUICK_JOB,
        }
        created = client.post("/api/v1/fine_tuning/jobs", json=body)
        assert created.status_code == 200, created.text
        job_id = created.json()["id"]
        url = f"/api/v1/fine_tuning/jobs/{job_id}"
        status = wait_for(
            lambda: (s := client.get(url).json()["status"]) in ("succeeded", "failed", "cancelled") and s,
            timeout=240,
            message="the job to finish",
        )
        assert status == "succeeded", client.get(url).text
    return FinishedJob(job_id, file_id, uploaded.json()["filename"])


def raw_request(
    app: Any, method: str, raw_path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """Send ``raw_path`` to the ASGI app exactly as written (`../` and all), decoded once the way
    uvicorn decodes it: HTTP clients such as httpx would normalise the dots away first."""

    async def call() -> tuple[int, bytes]:
        path, _, query = raw_path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"testserver")]
            + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "state": {},
        }
        status, body = 0, b""

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body += message.get("body", b"")

        await app(scope, receive, send)
        return status, body

    return anyio.run(call)
