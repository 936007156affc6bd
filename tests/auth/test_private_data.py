"""What a hostile probe reached that was not the reader's: a public job on a private dataset, private
job ids on the leaderboard and the workers panel, another member's dataset cleaned.

The rule: a job trained or validated on a private file is private (whoever may see a job may
see its data). Defence in depth: a job's rows and file names are still only given to those who
may read the file itself.
"""

from pathlib import Path

from sqlmodel import select

from app.core.db import session_scope
from app.core.ids import new_id
from app.core.tables import Job, JobStatus, User, Vote, WorkerRecord
from app.core.timeutil import utcnow
from tests.auth.conftest import Team
from tests.factories import INSTRUCTION_ROWS, upload

HTML = {"Accept": "text/html"}


def _user_id(name: str) -> int:
    with session_scope() as session:
        user = session.exec(select(User).where(User.username == name)).one()
        assert user.id is not None
        return user.id


def _job_row(owner: str, *, private: bool, training_file: str = "file-x", **fields: object) -> str:
    with session_scope() as session:
        job = Job(
            id=new_id("ftjob"),
            model="tiny-llama",
            training_file=training_file,
            owner_id=_user_id(owner),
            owner=owner,
            private=private,
            **fields,
        )
        session.add(job)
    return job.id


def test_a_job_on_a_private_file_is_private_whatever_the_request_said(team: Team, tiny_model: str) -> None:
    secret_file = upload(team.alice, INSTRUCTION_ROWS[:12], private="true")
    created = team.alice.post(
        "/api/v1/fine_tuning/jobs",
        json={"model": tiny_model, "training_file": secret_file, "hyperparameters": {"n_epochs": 1}},
    )
    assert created.status_code == 200 and created.json()["private"] is True
    job_id = created.json()["id"]
    events = [
        e["message"] for e in team.alice.get(f"/api/v1/fine_tuning/jobs/{job_id}/events").json()["data"]
    ]
    assert any(f"it trains on the private file(s) {secret_file}" in m for m in events)
    for other in (team.bob, team.vera):
        assert other.get(f"/api/v1/fine_tuning/jobs/{job_id}").status_code == 404
        assert job_id not in other.get("/api/v1/fine_tuning/jobs").text
        assert job_id not in other.get("/", headers=HTML).text
    # a public validation file does not make it public; a private validation file makes it private
    public_file = upload(team.alice, INSTRUCTION_ROWS[:12])
    validated = team.alice.post(
        "/api/v1/fine_tuning/jobs",
        json={"model": tiny_model, "training_file": public_file, "validation_file": secret_file},
    )
    assert validated.json()["private"] is True
    form = {"model": tiny_model, "training_file": secret_file, "n_epochs": "1"}
    page = team.alice.post("/jobs", data=form, follow_redirects=False)
    assert page.status_code == 303
    page_job = page.headers["location"].rsplit("/", 1)[-1]
    assert team.alice.get(f"/api/v1/fine_tuning/jobs/{page_job}").json()["private"] is True
    assert team.bob.get(f"/api/v1/fine_tuning/jobs/{page_job}").status_code == 404


def test_a_job_left_public_on_a_private_file_gives_away_neither_rows_nor_name(
    team: Team, tiny_model: str
) -> None:
    """As the probe found it (made before the rule): batch sources and job pages hold back the file."""
    secret_file = upload(team.alice, INSTRUCTION_ROWS[:12], private="true")
    leaky = _job_row("alice", private=False, training_file=secret_file)
    adapter = _job_row(
        "bob", private=False, status=JobStatus.succeeded, adapter_key="jobs/x/adapter", finished_at=utcnow()
    )
    body = {"models": [tiny_model, f"{tiny_model}:{adapter}"], "source": {"job_id": leaky}}
    refused = team.vera.post("/api/v1/playground/batches", json=body)
    assert refused.status_code == 404, refused.text
    assert team.bob.post("/api/v1/playground/batches", json=body).status_code == 404
    assert team.alice.post("/api/v1/playground/batches", json=body).status_code == 200  # her own data
    filename = team.alice.get(f"/api/v1/files/{secret_file}").json()["filename"]
    assert filename in team.alice.get(f"/jobs/{leaky}", headers=HTML).text
    page = team.vera.get(f"/jobs/{leaky}", headers=HTML)
    assert page.status_code == 200 and filename not in page.text


def test_the_leaderboard_leaves_out_models_of_jobs_the_reader_may_not_see(team: Team) -> None:
    hidden = _job_row("alice", private=True, status=JobStatus.succeeded)
    shown = _job_row("bob", private=False, status=JobStatus.succeeded)
    with session_scope() as session:
        for model_a, model_b, winner in (
            (f"tiny-llama:{hidden}", "tiny-llama", "a"),
            (f"tiny-llama:{shown}", f"tiny-llama:{hidden}", "b"),
            (f"tiny-llama:{shown}", "tiny-llama", "a"),
        ):
            session.add(Vote(id=new_id("vote"), model_a=model_a, model_b=model_b, winner=winner, prompt="p"))
    for reader, sees_hidden in (
        (team.alice, True),
        (team.admin, True),
        (team.bob, False),
        (team.vera, False),
    ):
        summary = reader.get("/api/v1/playground/votes/summary").json()
        models = {s["model"] for s in summary["data"]}
        assert (f"tiny-llama:{hidden}" in models) is sees_hidden
        assert f"tiny-llama:{shown}" in models and "tiny-llama" in models
        assert summary["votes"] == 3  # the games still count: a model's record does not depend on who asks
        for page in ("/playground/leaderboard", "/playground"):
            assert (hidden in reader.get(page, headers=HTML).text) is sees_hidden, page


def test_the_workers_panel_names_only_jobs_the_reader_may_see(team: Team) -> None:
    job_id = _job_row("alice", private=True, status=JobStatus.running, worker="gpu0@box")
    with session_scope() as session:
        session.add(WorkerRecord(name="gpu0@box", host="box", pid=1, device="cpu", queue="q"))
    for reader, named in ((team.alice, True), (team.admin, True), (team.bob, False), (team.vera, False)):
        panel = reader.get("/", headers=HTML).text
        assert (job_id in panel) is named
        assert ("running a private job" in panel) is not named


def test_only_the_owner_or_an_admin_cleans_a_dataset(team: Team, configured: Path) -> None:
    file_id = upload(team.alice, INSTRUCTION_ROWS[:12])  # public: bob sees it, may not change it
    body = {"filters": ["near_duplicates"]}
    refused = team.bob.post(f"/api/v1/files/{file_id}/clean", json=body)
    assert refused.status_code == 403 and "owner or an admin can clean" in refused.json()["error"]["message"]
    form = team.bob.post(f"/datasets/{file_id}/clean", data=body, headers=HTML)
    assert form.status_code == 403
    assert (
        "Only the file's owner (alice) or an admin" in team.bob.get(f"/datasets/{file_id}", headers=HTML).text
    )
    versions = team.alice.get("/api/v1/files").json()["data"]
    assert [f["id"] for f in versions] == [file_id]  # nothing landed in its lineage
    assert team.alice.post(f"/api/v1/files/{file_id}/clean", json=body).status_code == 200
    assert team.admin.post(f"/api/v1/files/{file_id}/clean", json=body).status_code == 200
