"""Who gets in, and what each role may see and change (issue #6's access rules)."""

import json
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.auth.conftest import Team
from tests.factories import INSTRUCTION_ROWS, upload

JOB_READS = [
    "/api/v1/fine_tuning/jobs/{job}",
    "/api/v1/fine_tuning/jobs/{job}/events",
    "/api/v1/fine_tuning/jobs/{job}/checkpoints",
    "/api/v1/fine_tuning/jobs/{job}/metrics",
    "/api/v1/fine_tuning/jobs/{job}/series",
    "/api/v1/fine_tuning/jobs/{job}/stream",
    "/api/v1/fine_tuning/jobs/{job}/adapter",
    "/api/v1/fine_tuning/jobs/{job}/checkpoints/ftckpt-1/download",
    "/api/v1/fine_tuning/jobs/{job}/merge",
    "/api/v1/fine_tuning/jobs/{job}/merged",
    "/jobs/{job}",
    "/jobs/{job}/checkpoints",
    "/jobs/{job}/merge",
    "/jobs/new?clone={job}",
    "/api/v1/files/{file}",
    "/api/v1/files/{file}/stats",
    "/api/v1/files/{file}/rows",
    "/api/v1/files/{file}/cleaning",
    "/datasets/{file}",
    "/datasets/{file}/rows",
]
JOB_WRITES = [
    ("POST", "/api/v1/fine_tuning/jobs/{job}/cancel", None),
    ("POST", "/api/v1/fine_tuning/jobs/{job}/merge", None),
    ("POST", "/api/v1/fine_tuning/jobs/{job}/merge/cancel", None),
    ("POST", "/api/v1/fine_tuning/jobs/{job}/resume", {"checkpoint": "ftckpt-1"}),
    ("DELETE", "/api/v1/fine_tuning/jobs/{job}", None),
    ("POST", "/api/v1/files/{file}/clean", {"filters": ["duplicates"]}),
]


def test_no_credentials_get_401_on_the_api_and_the_login_page_in_a_browser(
    anonymous: TestClient, team: Team, private_job: dict[str, str]
) -> None:
    for path in [*JOB_READS, "/api/v1/fine_tuning/jobs", "/api/v1/files", "/api/v1/models", "/v1/models"]:
        if not path.startswith(("/api", "/v1")):
            continue
        answer = anonymous.get(path.format(**private_job))
        assert answer.status_code == 401, path
        assert answer.json()["error"]["type"] == "authentication_error"
        assert answer.headers["www-authenticate"] == "Bearer"
    page = anonymous.get("/jobs", headers={"Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fjobs"
    assert anonymous.get("/login").status_code == 200
    assert anonymous.get("/healthz").status_code == 200


def test_a_revoked_or_made_up_key_gets_401(team: Team) -> None:
    created = team.alice.post("/api/v1/me/api_keys", json={"name": "ci"})
    secret = created.json()["key"]
    with TestClient(team.alice.app, headers={"Authorization": f"Bearer {secret}"}) as ci:
        assert ci.get("/api/v1/me").json()["username"] == "alice"
        assert team.alice.delete(f"/api/v1/me/api_keys/{created.json()['id']}").status_code == 200
        refused = ci.get("/api/v1/fine_tuning/jobs")
        assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    for header in ("Bearer td-not-a-real-key", "Basic YWxpY2U6eA==", "Bearer "):
        with TestClient(team.alice.app, headers={"Authorization": header}) as stranger:
            assert stranger.get("/api/v1/fine_tuning/jobs").status_code == 401, header


def test_another_users_private_job_and_file_are_404_on_every_route(
    team: Team, private_job: dict[str, str]
) -> None:
    missing = (
        f"no fine-tuning job with id {private_job['job']!r}",
        f"no file with id {private_job['file']!r}",
    )
    for path in JOB_READS:
        url = path.format(**private_job)
        for stranger in (team.bob, team.vera):
            answer = stranger.get(url)
            assert answer.status_code == 404 and answer.json()["error"]["message"] in missing, url
        if not url.endswith("/stream"):  # (a queued job's stream stays open)
            mine = team.alice.get(url)  # the owner gets past access (some things just don't exist yet)
            assert mine.status_code not in (401, 403), url
            assert mine.status_code != 404 or mine.json()["error"]["message"] not in missing, url
    for method, path, body in JOB_WRITES:
        url = path.format(**private_job)
        answer = team.bob.request(method, url, json=body)
        assert answer.status_code == 404 and answer.json()["error"]["message"] in missing, url
    # … and nowhere in the lists
    assert private_job["job"] not in team.bob.get("/api/v1/fine_tuning/jobs").text
    assert private_job["file"] not in team.bob.get("/api/v1/files").text
    for page in ("/", "/jobs", "/datasets", "/compare", "/models", "/jobs/new"):
        text = team.bob.get(page).text
        assert private_job["job"] not in text and private_job["file"] not in text, page
    # nor usable: a job on another user's private file is refused as if the file did not exist
    refused = team.bob.post(
        "/api/v1/fine_tuning/jobs", json={"model": "tiny-llama", "training_file": private_job["file"]}
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "training_file"
    # the admin sees and manages everything
    assert team.admin.get(f"/api/v1/fine_tuning/jobs/{private_job['job']}").json()["owner"] == "alice"
    assert private_job["job"] in team.admin.get("/api/v1/fine_tuning/jobs").text


def test_members_manage_their_own_jobs_and_only_read_the_teams(team: Team, tiny_model: str) -> None:
    file_id = upload(team.alice, INSTRUCTION_ROWS[:12])
    job = team.alice.post("/api/v1/fine_tuning/jobs", json={"model": tiny_model, "training_file": file_id})
    job_id = job.json()["id"]
    assert job.json()["owner"] == "alice" and job.json()["private"] is False
    # bob sees the team job but may not cancel it
    assert team.bob.get(f"/api/v1/fine_tuning/jobs/{job_id}").status_code == 200
    refused = team.bob.post(f"/api/v1/fine_tuning/jobs/{job_id}/cancel")
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == f"only the job's owner or an admin can cancel job {job_id}"
    # bob may train on alice's team dataset
    own = team.bob.post("/api/v1/fine_tuning/jobs", json={"model": tiny_model, "training_file": file_id})
    assert own.status_code == 200 and own.json()["owner"] == "bob"
    # the job page shows bob no cancel button on alice's job, but one on his own
    assert 'id="cancel-form"' not in team.bob.get(f"/jobs/{job_id}").text
    assert 'id="cancel-form"' in team.bob.get(f"/jobs/{own.json()['id']}").text
    # alice and the admin may
    assert team.admin.post(f"/api/v1/fine_tuning/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    assert team.alice.delete(f"/api/v1/fine_tuning/jobs/{job_id}").status_code == 200


def test_viewers_read_and_chat_but_change_nothing(team: Team, tiny_model: str) -> None:
    file_id = upload(team.alice, INSTRUCTION_ROWS[:12])
    job_id = team.alice.post(
        "/api/v1/fine_tuning/jobs", json={"model": tiny_model, "training_file": file_id}
    ).json()["id"]
    assert team.vera.get(f"/api/v1/fine_tuning/jobs/{job_id}").status_code == 200
    assert team.vera.get("/jobs").status_code == 200
    for method, url, body in (
        ("POST", "/api/v1/fine_tuning/jobs", {"model": tiny_model, "training_file": file_id}),
        ("POST", f"/api/v1/fine_tuning/jobs/{job_id}/cancel", None),
        ("POST", "/api/v1/presets", {"name": "mine", "hyperparameters": {}}),
    ):
        answer = team.vera.request(method, url, json=body)
        assert answer.status_code == 403, url
        assert answer.json()["error"]["message"] == "viewers can only read; ask an admin for the member role"
    refused = team.vera.post(
        "/api/v1/files", files={"file": ("d.jsonl", b'{"instruction":"a","output":"b"}\n')}
    )
    assert refused.status_code == 403
    # their own account is theirs to manage, and the playground's chat is open to them
    assert team.vera.post("/api/v1/me/api_keys", json={"name": "notebook"}).status_code == 200
    chat = team.vera.post("/v1/chat/completions", json={"model": tiny_model, "messages": []})
    assert chat.status_code != 403


def test_only_admins_manage_users_and_read_the_audit_log(team: Team) -> None:
    assert team.alice.get("/api/v1/users").status_code == 403
    assert team.alice.get("/admin/users").status_code == 403
    made = team.admin.post("/api/v1/users", json={"username": "carol", "password": "long-enough-1"})
    assert made.status_code == 200 and made.json()["role"] == "member"
    taken = team.admin.post("/api/v1/users", json={"username": "carol", "password": "long-enough-1"})
    assert taken.status_code == 409 and taken.json()["error"]["message"] == "the username 'carol' is taken"
    short = team.admin.post("/api/v1/users", json={"username": "dan", "password": "short"})
    assert short.status_code == 400 and "at least 8 characters" in short.json()["error"]["message"]
    assert team.admin.patch("/api/v1/users/carol", json={"role": "viewer"}).json()["role"] == "viewer"
    last_admin = team.admin.patch("/api/v1/users/admin", json={"role": "member"})
    assert last_admin.status_code == 409 and "last admin" in last_admin.json()["error"]["message"]
    assert "carol" in team.admin.get("/admin/users").text
    actions = [e["action"] for e in team.admin.get("/api/v1/audit").json()["data"]]
    assert actions[:2] == ["user_updated", "user_created"]


def test_the_audit_log_says_who_did_what_to_which_job(team: Team, tiny_model: str, configured: Path) -> None:
    file_id = upload(team.alice, INSTRUCTION_ROWS[:12])
    job_id = team.alice.post(
        "/api/v1/fine_tuning/jobs", json={"model": tiny_model, "training_file": file_id}
    ).json()["id"]
    team.alice.post(f"/api/v1/fine_tuning/jobs/{job_id}/cancel")
    team.admin.delete(f"/api/v1/fine_tuning/jobs/{job_id}")
    log = team.admin.get("/api/v1/audit").json()["data"]
    trail = [
        (e["username"], e["action"], e["object_id"])
        for e in reversed(log)
        if e["object_id"] in (job_id, file_id)
    ]
    assert trail == [
        ("alice", "file_uploaded", file_id),
        ("alice", "job_created", job_id),
        ("alice", "job_cancelled", job_id),
        ("admin", "job_deleted", job_id),
    ]
    assert all(e["ip"] for e in log)
    page = team.admin.get("/admin/audit?user=alice").text
    assert "job_cancelled" in page and "job_deleted" not in page


def test_api_keys_are_shown_once_and_stored_only_as_hashes(team: Team, configured: Path) -> None:
    created = team.alice.post("/api/v1/me/api_keys", json={"name": "ci"}).json()
    secret = created["key"]
    assert secret.startswith("td-") and len(secret) > 40
    listed = team.alice.get("/api/v1/me/api_keys").json()
    assert all(k["key"] is None for k in listed) and secret not in json.dumps(listed)
    database = sqlite3.connect(configured / "tunedeck.db") if (configured / "tunedeck.db").exists() else None
    if database is not None:
        dump = "\n".join(database.iterdump())
        assert secret not in dump and team.keys["alice"] not in dump
        assert "correct-horse-battery" not in dump  # passwords: only their scrypt hashes
    with TestClient(team.alice.app, headers={"Authorization": f"Bearer {secret}"}) as ci:
        ci.get("/api/v1/me")
    used = next(k for k in team.alice.get("/api/v1/me/api_keys").json() if k["id"] == created["id"])
    assert used["last_used_at"] is not None


def test_the_owner_filter_lists_one_persons_jobs(team: Team, tiny_model: str) -> None:
    file_id = upload(team.alice, INSTRUCTION_ROWS[:12])
    ids = {}
    for who in ("alice", "bob"):
        caller = getattr(team, who)
        ids[who] = caller.post(
            "/api/v1/fine_tuning/jobs", json={"model": tiny_model, "training_file": file_id, "suffix": who}
        ).json()["id"]
    mine = team.bob.get("/api/v1/fine_tuning/jobs", params={"owner": "alice"}).json()["data"]
    assert [j["id"] for j in mine] == [ids["alice"]]
    page = team.bob.get("/jobs", params={"owner": "alice"}).text
    assert ids["alice"] in page and ids["bob"] not in page
    assert '<option value="alice" selected>' in page


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_password_hashes_are_salted_scrypt(role: str, configured: Path) -> None:
    from app.auth import service
    from app.core.db import session_scope
    from app.core.tables import Role

    with session_scope() as session:
        one = service.create_user(session=session, username="u1", password="same-password", role=Role(role))
        two = service.create_user(session=session, username="u2", password="same-password", role=Role(role))
        assert one.password_hash.startswith("scrypt$32768$8$1$")
        assert one.password_hash != two.password_hash  # a salt each
        assert service.check_login(session=session, username="u1", password="same-password") is not None
        assert service.check_login(session=session, username="u1", password="Same-password") is None
        assert service.check_login(session=session, username="nobody", password="same-password") is None
