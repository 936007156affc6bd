"""Two real `tunedeck worker` processes advertising different memory, on Redis and Postgres: a job
nobody can hold is refused, jobs go to a worker that can hold them, higher priorities start first,
and a user's limit holds their next job back while another user's starts."""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import get_settings
from app.core.db import read_session
from app.core.presence import online_workers
from tests.accounts import bearer, make_user
from tests.core.scheduling.test_claims import BIG, HUGE, SMALL, submit
from tests.e2e.support import wait_for
from tests.factories import INSTRUCTION_ROWS, upload
from tests.reliability.conftest import Workers, finished, job_state

pytestmark = pytest.mark.slow

SMALL_GIB, BIG_GIB = "0.1", "0.2"  # SMALL jobs fit both workers, BIG ones only the second, HUGE neither
LONG = 500  # steps: a job that runs until the test cancels it


@pytest.fixture
def database_url(postgres_database: str) -> str:
    """Here the workers share Postgres (and Redis): no SQLite variant."""
    return postgres_database


@dataclass
class Pool:
    workers: Workers
    small: str  # the workers' names
    big: str

    def finished(self, client: TestClient, *job_ids: str) -> dict[str, dict[str, Any]]:
        return {job_id: finished(client, job_id, 150, self.workers) for job_id in job_ids}


@pytest.fixture
def pool(configured: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pool]:
    """A small and a big worker with slowed steps, once both are online."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    get_settings.cache_clear()
    # slowed steps keep jobs running while the test looks; one thread each spares the shared cores
    env = {**os.environ, "TUNEDECK_FAULT_INJECTION": "step_delay=0.2", "OMP_NUM_THREADS": "1"}
    workers = Workers(configured, env)
    workers.start(TUNEDECK_WORKER_MEMORY_GIB=SMALL_GIB)
    workers.start(TUNEDECK_WORKER_MEMORY_GIB=BIG_GIB)

    def both_online() -> dict[float, str] | None:
        with read_session() as session:
            seen = {w.record.device_memory_gib: w.record.name for w in online_workers(session=session)}
        return seen if len(seen) == 2 else None

    try:
        seen = wait_for(both_online, timeout=120, interval=0.5, message="both workers to announce themselves")
        yield Pool(workers, seen[float(SMALL_GIB)], seen[float(BIG_GIB)])
    finally:
        workers.stop()
        _purge(redis_url, get_settings().queue)


def _purge(redis_url: str, queue: str) -> None:
    """Drop this test's leftover wake-ups from the shared Redis database."""
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in [*client.scan_iter(f"{queue}*"), *client.scan_iter(f"_kombu.binding.{queue}*")]:
        client.delete(key)


def running_on(client: TestClient, job_id: str) -> str | None:
    state = job_state(client, job_id)
    return str(state["worker"]) if state["status"] in ("validating_files", "running") else None


def first_start(client: TestClient, job_id: str) -> int:
    """When the job's first attempt began (epoch seconds), from its event log."""
    events = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 200}).json()["data"]
    return min(e["created_at"] for e in events if e["message"].startswith("Attempt 1 started"))


def test_jobs_go_where_they_fit_by_priority_within_each_users_limit(
    client: TestClient, tiny_model: str, pool: Pool
) -> None:
    """One scenario on one pair of workers (starting them and importing the training stack is
    most of the time): refusal and routing, then priority, then the per-user limit."""
    file_id = upload(client, INSTRUCTION_ROWS)
    body = {"model": tiny_model, "training_file": file_id, "hyperparameters": HUGE}
    refused = client.post("/api/v1/fine_tuning/jobs", json=body)
    assert refused.status_code == 422
    assert f"the largest worker ({pool.big}) has 0.20 GiB" in refused.json()["error"]["message"]

    # A big job can only run on the big worker; while it is busy, a small job takes the small one.
    busy = submit(client, file_id, max_steps=LONG, **BIG)  # runs until cancelled
    wait_for(lambda: running_on(client, busy), timeout=90, message="the first big job to start")
    assert running_on(client, busy) == pool.big
    small = submit(client, file_id, max_steps=2, **SMALL)
    low = submit(client, file_id, priority=1, max_steps=1, **BIG)
    high = submit(client, file_id, priority=9, max_steps=1, **BIG)
    assert pool.finished(client, small)[small]["worker"] == pool.small
    assert job_state(client, low)["status"] == job_state(client, high)["status"] == "queued"

    # Once the big worker is free it takes the priority-9 job before the older priority-1 one.
    assert client.post(f"/api/v1/fine_tuning/jobs/{busy}/cancel").status_code == 200
    jobs = pool.finished(client, busy, low, high)
    assert jobs[busy]["status"] == "cancelled"
    assert jobs[low]["status"] == jobs[high]["status"] == "succeeded", jobs
    assert jobs[low]["worker"] == jobs[high]["worker"] == pool.big
    assert first_start(client, high) < first_start(client, low)  # submitted later, started first
    assert first_start(client, low) >= jobs[high]["finished_at"]
    assert all(j["device_hours"] > 0 and j["gpu_hours"] == 0 for j in jobs.values())  # CPU workers
    small_log = (pool.workers.data_dir.parent / f"{pool.small}.log").read_text(errors="replace")
    assert small in small_log and low not in small_log and high not in small_log  # never woken for them

    # With a limit of 1, alice's second job waits while bob's newer one runs, and starts when her
    # first one ends.
    alice, bob = make_user("alice", "member"), make_user("bob", "member")
    assert client.patch("/api/v1/users/alice", json={"max_concurrent_jobs": 1}).status_code == 200
    first = submit(client, file_id, alice, max_steps=LONG, **SMALL)  # runs until cancelled
    wait_for(lambda: running_on(client, first), timeout=60, message="alice's first job to start")
    second = submit(client, file_id, alice, max_steps=2, **SMALL)
    others = submit(client, file_id, bob, max_steps=2, **SMALL)
    assert pool.finished(client, others)[others]["status"] == "succeeded"
    held = job_state(client, second)
    assert held["status"] == "queued", held
    assert held["waiting_reason"] == "waiting: alice already runs 1 job (the limit is 1)"
    assert "waiting: alice already runs 1 job" in client.get(f"/jobs/{second}", headers=bearer(alice)).text

    assert client.post(f"/api/v1/fine_tuning/jobs/{first}/cancel", headers=bearer(alice)).status_code == 200
    done = pool.finished(client, first, second)
    assert done[first]["status"] == "cancelled" and done[second]["status"] == "succeeded", done
    assert first_start(client, second) >= done[first]["finished_at"]  # it started once the first ended
