"""Scheduling without workers, on the real database and the embedded broker: which job a worker
claims next (priority, then age; memory; the per-user limit), where wake-ups go, the refusal of
a job no worker can hold, and the GPU-hours each attempt adds."""

from collections import Counter
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from app.core.config import get_settings
from app.core.db import read_session, session_scope
from app.core.leases import retry_or_fail
from app.core.presence import announce
from app.core.queue import GIB, queue_above, training_queue, worker_queues
from app.core.scheduling import claim_next, pass_on
from app.core.tables import Job, JobStatus
from app.core.timeutil import utcnow
from tests.accounts import bearer, make_user
from tests.factories import INSTRUCTION_ROWS, QUICK, upload

SMALL = {"batch_size": 2}  # about 0.04 GiB on the tiny model: fits a 0.1 GiB worker
BIG = {"batch_size": 8}  # about 0.15 GiB: needs a 0.2 GiB worker
HUGE = {"batch_size": 16}  # about 0.30 GiB: fits neither


def submit(client: TestClient, file_id: str, key: str | None = None, priority: int = 5, **hp: object) -> str:
    body = {
        "model": "tiny-llama",
        "training_file": file_id,
        "priority": priority,
        "hyperparameters": {**QUICK, **hp},
    }
    response = client.post("/api/v1/fine_tuning/jobs", json=body, headers=bearer(key) if key else None)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def claim(worker: str = "w@test", gib: float | None = None, gpus: int = 0) -> str | None:
    claimed = claim_next(worker=worker, memory_bytes=None if gib is None else int(gib * GIB), gpus=gpus)
    return claimed.job_id if claimed else None


def job(job_id: str) -> Job:
    with read_session() as session:
        found = session.get(Job, job_id)
        assert found is not None
        return found


def finish(job_id: str) -> None:
    with session_scope() as session:
        row = session.get(Job, job_id)
        assert row is not None
        row.status, row.finished_at = JobStatus.succeeded, utcnow()
        session.add(row)


def messages() -> Counter[str]:
    """Wake-ups waiting in the embedded broker, by queue."""
    folder = get_settings().broker_dir / "queue"
    return Counter(p.name.partition(".")[2].removesuffix(".msg") for p in folder.glob("*.msg"))


def test_memory_tiers_name_the_queues() -> None:
    q = get_settings().queue
    assert training_queue(None) == q and training_queue(int(0.1 * GIB)) == q  # every worker wakes
    assert training_queue(int(0.59 * GIB)) == f"{q}.mem-0.5"
    assert training_queue(int(70 * GIB)) == f"{q}.mem-64"
    assert worker_queues(0.6) == [q, f"{q}.mem-0.125", f"{q}.mem-0.25", f"{q}.mem-0.5"]
    assert f"{q}.mem-64" in worker_queues(79.1) and f"{q}.mem-80" not in worker_queues(79.1)
    assert queue_above(0.25) == f"{q}.mem-0.5" and queue_above(1000) is None


def test_workers_take_the_highest_priority_then_the_oldest_job_they_can_hold(
    client: TestClient, tiny_model: str
) -> None:
    assert client.patch("/api/v1/users/admin", json={"max_concurrent_jobs": 0}).json()["job_limit"] == 0
    file_id = upload(client, INSTRUCTION_ROWS)
    low = submit(client, file_id, priority=1, **SMALL)
    normal = submit(client, file_id, **SMALL)
    big = submit(client, file_id, priority=9, **BIG)
    urgent = submit(client, file_id, priority=9, **SMALL)
    normal_later = submit(client, file_id, **SMALL)
    assert 0.125 * GIB < (job(big).memory_estimate_bytes or 0) < 0.2 * GIB

    overview = client.get("/").text
    queue = overview[overview.index('id="queue"') : overview.index('id="recent"')]
    assert [queue.index(j) for j in (big, urgent, normal, normal_later, low)] == sorted(
        queue.index(j) for j in (big, urgent, normal, normal_later, low)
    )

    assert claim("small@test", gib=0.1) == urgent  # the big one does not fit
    assert claim("big@test", gib=0.2) == big
    assert [claim("small@test", gib=0.1) for _ in range(4)] == [normal, normal_later, low, None]
    assert job(big).worker == "big@test" and job(big).attempt == 1
    assert job(urgent).status == JobStatus.validating_files and job(urgent).attempt_gpus == 0


def test_members_queue_at_normal_priorities_and_admins_may_expedite(
    client: TestClient, tiny_model: str
) -> None:
    member = make_user("mia", "member")
    file_id = upload(client, INSTRUCTION_ROWS[:12])
    body = {"model": tiny_model, "training_file": file_id, "priority": 7}
    refused = client.post("/api/v1/fine_tuning/jobs", json=body, headers=bearer(member))
    assert refused.status_code == 403 and "members choose 0-5" in refused.json()["error"]["message"]
    assert job(submit(client, file_id, member, priority=5)).priority == 5
    urgent = submit(client, file_id, priority=9)
    assert client.get(f"/api/v1/fine_tuning/jobs/{urgent}").json()["priority"] == 9
    form = client.get("/jobs/new", headers=bearer(member)).text
    assert 'name="priority"' in form and '<option value="6"' not in form


def test_a_waiting_jobs_priority_can_change_within_the_owners_range(
    client: TestClient, tiny_model: str
) -> None:
    mia, bob = make_user("mia", "member"), make_user("bob", "member")
    file_id = upload(client, INSTRUCTION_ROWS[:12])
    older, newer = submit(client, file_id, mia), submit(client, file_id, mia)

    def move(job_id: str, priority: int, key: str = mia) -> object:
        return client.post(
            f"/api/v1/fine_tuning/jobs/{job_id}/priority", json={"priority": priority}, headers=bearer(key)
        )

    moved = move(older, 1)
    assert moved.status_code == 200 and moved.json()["priority"] == 1  # type: ignore[attr-defined]
    too_high = move(newer, 7)
    assert too_high.status_code == 403 and "members choose 0-5" in too_high.text  # type: ignore[attr-defined]
    not_theirs = move(newer, 0, bob)
    assert not_theirs.status_code == 403 and "only the job's owner" in not_theirs.text  # type: ignore[attr-defined]
    assert move(newer, 10).status_code == 422  # type: ignore[attr-defined]

    page = client.get(f"/jobs/{newer}", headers=bearer(mia)).text
    assert 'id="priority-form"' in page and '<option value="5" selected>' in page and 'value="6"' not in page
    assert 'id="priority-form"' not in client.get(f"/jobs/{newer}", headers=bearer(bob)).text
    by_form = client.post(
        f"/jobs/{newer}/priority", data={"priority": "3"}, headers=bearer(mia), follow_redirects=False
    )
    assert by_form.status_code == 303 and job(newer).priority == 3

    assert claim() == newer  # 3 before 1, though it is younger
    running = move(newer, 2)
    assert running.status_code == 409 and "only change while it waits" in running.text  # type: ignore[attr-defined]
    assert client.post(f"/api/v1/fine_tuning/jobs/{older}/priority", json={"priority": 9}).status_code == 200
    events = client.get(f"/api/v1/fine_tuning/jobs/{older}/events").json()["data"]
    assert {"Priority changed from 5 to 1", "Priority changed from 1 to 9"} <= {e["message"] for e in events}
    audit = client.get("/api/v1/audit", params={"action": "job_priority_changed"}).json()["data"]
    assert len(audit) == 3 and {a["username"] for a in audit} == {"mia", "admin"}


def test_the_per_user_limit_holds_a_users_jobs_back_and_lets_others_pass(
    client: TestClient, tiny_model: str
) -> None:
    alice, bob = make_user("alice", "member"), make_user("bob", "member")
    changed = client.patch("/api/v1/users/alice", json={"max_concurrent_jobs": 1}).json()
    assert changed["max_concurrent_jobs"] == 1 and changed["job_limit"] == 1
    file_id = upload(client, INSTRUCTION_ROWS)
    first, second = submit(client, file_id, alice, **SMALL), submit(client, file_id, alice, **SMALL)
    others = submit(client, file_id, bob, **SMALL)

    assert claim("w1@test") == first
    assert claim("w2@test") == others  # alice's second job waits; bob's newer one goes ahead
    assert claim("w3@test") is None
    reason = "waiting: alice already runs 1 job (the limit is 1)"
    assert client.get(f"/api/v1/fine_tuning/jobs/{second}").json()["waiting_reason"] == reason
    assert reason in client.get(f"/jobs/{second}").text and reason in client.get("/").text
    messages_before = messages()
    pass_on(second, None, None)  # a wake-up for a held-back job is not sent round again
    assert messages() == messages_before

    finish(first)
    assert claim("w1@test") == second
    assert client.get(f"/api/v1/fine_tuning/jobs/{second}").json()["waiting_reason"] is None
    back = client.patch("/api/v1/users/alice", json={"max_concurrent_jobs": None}).json()
    assert back["max_concurrent_jobs"] is None and back["job_limit"] == 2
    assert 'name="max_concurrent_jobs"' in client.get("/admin/users").text


def test_wake_ups_go_to_the_tier_the_job_needs_and_are_passed_on(client: TestClient, tiny_model: str) -> None:
    q = get_settings().queue
    file_id = upload(client, INSTRUCTION_ROWS)
    before = messages()
    big = submit(client, file_id, **BIG)
    small = submit(client, file_id, **SMALL)
    assert messages() - before == Counter({f"{q}.mem-0.125": 1, q: 1})

    pass_on(big, None, 0.1)  # woken on a worker too small for it: the tier above that worker
    assert messages() - before == Counter({f"{q}.mem-0.125": 2, q: 1})
    assert claim("big@test", gib=0.2) == big
    pass_on(small, big, 0.2)  # spent on a bigger job: the small one is woken again
    assert messages() - before == Counter({f"{q}.mem-0.125": 2, q: 2})


def test_a_job_no_known_worker_can_hold_is_refused_with_what_to_change(
    client: TestClient, tiny_model: str
) -> None:
    file_id = upload(client, INSTRUCTION_ROWS)
    unknown = submit(client, file_id, **HUGE)  # no worker has announced itself: it waits
    announce("small@box", queue="tunedeck", device="cpu", device_count=1, device_memory_gib=0.2)
    body = {"model": tiny_model, "training_file": file_id, "hyperparameters": {**QUICK, **HUGE}}
    refused = client.post("/api/v1/fine_tuning/jobs", json=body)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "no_worker_fits"
    message = error["message"]
    assert message.startswith("this job needs about 0.30 GiB (model 0.01, activations 0.29")
    assert "the largest worker (small@box) has 0.20 GiB" in message
    assert message.endswith(
        "try quantization 4bit, a smaller batch_size or max_seq_length, or gradient checkpointing"
    )
    advice = client.post("/api/v1/fine_tuning/jobs/advice", json=body).json()
    assert advice["blocked"] and any(c["code"] == "no_worker_fits" for c in advice["checks"])
    submit(client, file_id, **BIG)  # 0.15 GiB fits
    waiting = client.get(f"/api/v1/fine_tuning/jobs/{unknown}").json()["waiting_reason"]
    assert waiting == "waiting: it needs about 0.30 GiB; the largest worker has 0.20 GiB"


@pytest.mark.parametrize("gpus", [1, 0], ids=["gpu", "cpu"])
def test_each_attempt_adds_its_time_times_its_devices(client: TestClient, tiny_model: str, gpus: int) -> None:
    file_id = upload(client, INSTRUCTION_ROWS[:12])
    job_id = submit(client, file_id, **SMALL)
    assert claim(gpus=gpus) == job_id
    with session_scope() as session:  # an attempt that ran for an hour, then its worker died
        row = session.get(Job, job_id)
        assert row is not None
        row.attempt_started_at, row.heartbeat_at = utcnow() - timedelta(hours=1), utcnow()
        session.add(row)
    with session_scope() as session:
        row = session.get(Job, job_id)
        assert row is not None
        assert retry_or_fail(session, row, reason="worker lost") == JobStatus.retrying
    public = client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()
    assert public["device_hours"] == pytest.approx(1.0, abs=0.01)
    assert public["gpu_hours"] == pytest.approx(float(gpus), abs=0.01)
    assert job(job_id).attempt_started_at is None  # charged once
    me = client.get("/api/v1/me").json()
    assert me["gpu_hours"] == pytest.approx(public["gpu_hours"]) and me["device_hours"] > 0.99
    users = {u["username"]: u for u in client.get("/api/v1/users").json()}
    assert users["admin"]["gpu_hours"] == pytest.approx(public["gpu_hours"])
    shown = f"{public['gpu_hours']:.3f}"
    assert shown in client.get("/account").text and shown in client.get("/admin/users").text
    assert f"{public['gpu_hours']:.2f}" in client.get("/jobs").text


def test_a_job_on_several_gpus_goes_to_a_worker_that_sees_that_many(
    client: TestClient, tiny_model: str
) -> None:
    """One process per GPU on one host: a 1-GPU worker leaves a 2-process job for a 2-GPU one
    (a CPU worker runs it as two CPU processes); with only GPU workers too small, it is refused."""
    file_id = upload(client, INSTRUCTION_ROWS)
    ddp = submit(client, file_id, num_processes=2)  # no worker known yet: accepted, waits
    single = submit(client, file_id)
    assert claim("one-gpu@test", gpus=1) == single  # the older 2-process job is skipped
    assert claim("one-gpu@test", gpus=1) is None
    assert claim("two-gpus@test", gpus=2) == ddp
    assert job(ddp).attempt_gpus == 2
    finish(single), finish(ddp)

    later = submit(client, file_id, num_processes=2)  # accepted while no worker is known
    announce("gpu0@box", queue="tunedeck", device="NVIDIA H200", device_count=1, device_memory_gib=139.8)
    reason = client.get(f"/api/v1/fine_tuning/jobs/{later}").json()["waiting_reason"]
    assert reason == "waiting: it runs 2 processes, one per GPU; no worker sees more than 1"
    body = {"model": tiny_model, "training_file": file_id, "hyperparameters": {**QUICK, "num_processes": 4}}
    refused = client.post("/api/v1/fine_tuning/jobs", json=body)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "no_worker_fits" and error["param"] == "num_processes"
    assert (
        "num_processes 4 needs 4 GPUs on one host; the largest worker (gpu0@box) sees 1" in error["message"]
    )

    announce("cpu@box", queue="tunedeck", device="cpu (16 cores)", device_count=1, device_memory_gib=64)
    assert client.post("/api/v1/fine_tuning/jobs", json=body).status_code == 200  # a CPU worker can
