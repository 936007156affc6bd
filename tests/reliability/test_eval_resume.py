"""An eval run survives its worker: SIGKILL the short-lane worker mid-run, start another, and the
run goes on from its last graded item, each item graded once."""

import signal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import func, select

from app.core.db import read_session
from app.core.tables import EvalOutputItem
from tests.e2e.support import wait_for
from tests.reliability.conftest import Workers

pytestmark = pytest.mark.slow
ITEMS = 24


def graded(run_id: str) -> int:
    with read_session() as session:
        return int(session.exec(select(func.count()).where(EvalOutputItem.run_id == run_id)).one())


def test_an_eval_run_whose_worker_is_killed_goes_on_from_its_last_graded_item(
    client: TestClient, workers: Workers, configured: Path
) -> None:
    first = workers.start(TUNEDECK_FAULT_INJECTION="eval_item_delay=1.0")  # 4 at a time: ~4 items/s
    criterion = {
        "type": "string_check",
        "name": "even",
        "input": "{{sample.output_text}}",
        "reference": "even",
        "operation": "eq",
    }
    body = {
        "data_source_config": {"type": "custom", "item_schema": {"type": "object"}},
        "testing_criteria": [criterion],
    }
    eval_id = client.post("/api/v1/evals", json=body).json()["id"]
    content = [
        {"item": {"n": i}, "sample": {"output_text": "even" if i % 2 == 0 else "odd"}} for i in range(ITEMS)
    ]
    run = client.post(
        f"/api/v1/evals/{eval_id}/runs",
        json={"data_source": {"type": "jsonl", "source": {"type": "file_content", "content": content}}},
    ).json()
    wait_for(lambda: graded(run["id"]) >= 8, timeout=120, interval=0.1, message="8 graded items")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    at_kill = graded(run["id"])
    assert at_kill < ITEMS, "the run ended before the kill; slow it down"
    assert client.get(f"/api/v1/evals/{eval_id}/runs/{run['id']}").json()["status"] == "in_progress"

    workers.start(TUNEDECK_FAULT_INJECTION="eval_item_delay=0.1")
    done = wait_for(
        lambda: (
            (r := client.get(f"/api/v1/evals/{eval_id}/runs/{run['id']}").json())["status"] == "completed"
            and r
        ),
        timeout=120,
        message="the run to finish on the new worker",
    )
    assert done["result_counts"] == {"total": ITEMS, "errored": 0, "failed": ITEMS // 2, "passed": ITEMS // 2}
    items = client.get(
        f"/api/v1/evals/{eval_id}/runs/{run['id']}/output_items", params={"limit": 100}
    ).json()["data"]
    assert sorted(i["datasource_item_id"] for i in items) == list(range(ITEMS))  # each once
    assert graded(run["id"]) == ITEMS
    log = workers.logs(tail=None)
    assert "lost its task or its worker; queued again" in log
    assert f"{ITEMS - at_kill} of {ITEMS} items to answer" in log  # it went on from where it was
