"""Dashboard pages and the API beside them: overview (queue positions, workers online), the jobs
list's filters, search and pages, compare, clone-and-edit, delete."""

from fastapi.testclient import TestClient

from app.core.db import session_scope
from app.core.presence import announce, sign_off
from app.core.tables import Job, JobStatus
from app.core.timeutil import utcnow
from tests.jobs.test_api import create, make_file


def set_status(job_id: str, status: JobStatus, **fields: object) -> None:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.status = status
        for key, value in fields.items():
            setattr(job, key, value)
        session.add(job)


def test_overview_shows_running_queue_positions_workers_and_results(
    client: TestClient, tiny_model: str
) -> None:
    file_id = make_file(client)
    ids = [
        create(client, model=tiny_model, training_file=file_id, suffix=f"run{i}").json()["id"]
        for i in range(4)
    ]
    announce("gpu0@box", queue="tunedeck", device="NVIDIA H200", device_count=2, device_memory_gib=139.8)
    announce("gone@box", queue="tunedeck", device="cpu", device_count=1, device_memory_gib=24)
    sign_off("gone@box")
    set_status(ids[0], JobStatus.running, worker="gpu0@box", step=5, total_steps=20, started_at=utcnow())
    set_status(ids[1], JobStatus.succeeded, finished_at=utcnow(), train_loss=1.25, valid_loss=1.5)

    page = client.get("/").text
    running = page[page.index('id="running"') : page.index('id="queue"')]
    assert ids[0] in running and "step 5 / 20" in running
    queue = page[page.index('id="queue"') : page.index('id="recent"')]
    assert queue.index(ids[2]) < queue.index(ids[3])  # oldest first: positions 1 and 2
    assert "<td>1</td>" in queue and "<td>2</td>" in queue
    recent = page[page.index('id="recent"') : page.index('id="workers"')]
    assert ids[1] in recent and "1.25" in recent
    workers = page[page.index('id="workers"') :]
    assert "gpu0@box" in workers and "NVIDIA H200 × 2" in workers and "140 GiB" in workers
    assert f'running <a href="/jobs/{ids[0]}">' in workers
    assert "gone@box" not in workers  # signed off
    partial = client.get("/", headers={"HX-Request": "true"}).text  # what htmx swaps in every 3s
    assert partial.startswith("{#") is False and 'id="overview"' in partial and "<html" not in partial


def test_jobs_list_filters_searches_and_pages(client: TestClient, tiny_model: str) -> None:
    first, second = make_file(client, 20), make_file(client, 21)
    ids = [
        create(client, model=tiny_model, training_file=first, suffix=f"alpha-{i}").json()["id"]
        for i in range(27)
    ]
    other = create(client, model=tiny_model, training_file=second, suffix="beta").json()["id"]
    set_status(ids[0], JobStatus.failed, finished_at=utcnow())

    everything = client.get("/jobs").text
    assert "28 jobs" in everything and "page 1 of 2" in everything and "Older →" in everything
    page_two = client.get("/jobs", params={"page": 2}).text
    assert ids[0] in page_two and ids[1] in page_two and other not in page_two  # newest first
    assert "← Newer" in page_two
    by_dataset = client.get("/jobs", params={"dataset": second}).text
    assert other in by_dataset and ids[5] not in by_dataset and "1 job matching" in by_dataset
    failed = client.get("/jobs", params={"status": "failed"}).text
    assert ids[0] in failed and ids[1] not in failed
    searched = client.get("/jobs", params={"q": "BETA"}).text  # case-insensitive, in the suffix
    assert other in searched and ids[3] not in searched
    assert "No jobs match" in client.get("/jobs", params={"q": "100%_nothing"}).text
    by_id = client.get("/jobs", params={"q": ids[7][-10:]}).text
    assert ids[7] in by_id and "1 job matching" in by_id

    api = client.get("/api/v1/fine_tuning/jobs", params={"dataset": second}).json()["data"]
    assert [j["id"] for j in api] == [other]
    api = client.get("/api/v1/fine_tuning/jobs", params={"q": "alpha-2", "limit": 100}).json()["data"]
    assert {j["user_provided_suffix"] if "user_provided_suffix" in j else j["suffix"] for j in api} >= {
        "alpha-2"
    }
    assert client.get("/api/v1/fine_tuning/jobs", params={"model": "nope"}).json()["data"] == []


def test_compare_diffs_the_configs_and_refuses_one_job(client: TestClient, tiny_model: str) -> None:
    file_id = make_file(client)
    a = create(client, model=tiny_model, training_file=file_id, hyperparameters={"r": 8}).json()["id"]
    b = create(
        client, model=tiny_model, training_file=file_id, hyperparameters={"r": 16, "lora_alpha": 32}
    ).json()["id"]
    page = client.get("/compare", params={"ids": [a, b]})
    assert page.status_code == 200
    html = page.text
    assert 'data-jobs="' + f"{a},{b}" + '"' in html
    r_row = html[html.index("<th>r</th>") : html.index("</tr>", html.index("<th>r</th>"))]
    assert 'class="differs"' in r_row and ">8<" in r_row and ">16<" in r_row
    seed_row = html[html.index("<th>seed</th>") : html.index("</tr>", html.index("<th>seed</th>"))]
    assert "differs" not in seed_row
    assert "2 of" in html and "settings differ" in html
    one = client.get("/compare", params={"ids": [a]})
    assert one.status_code == 400 and "between 2 and 6 jobs" in one.text
    missing = client.get("/compare", params={"ids": [a, "ftjob-nope"]})
    assert missing.status_code == 400 and "There is no job ftjob-nope" in missing.text
    assert client.get("/compare").status_code == 200  # the picker alone


def test_clone_and_edit_fills_the_form_from_the_job(client: TestClient, tiny_model: str) -> None:
    file_id = make_file(client)
    hp = {"r": 32, "lora_alpha": 64, "learning_rate": 3e-4, "n_epochs": 2}
    job_id = create(
        client, model=tiny_model, training_file=file_id, suffix="first", seed=7, hyperparameters=hp
    ).json()["id"]
    form = client.get("/jobs/new", params={"clone": job_id}).text
    assert f'href="/jobs/{job_id}"' in form and "Filled in from" in form
    assert 'name="r" type="number"' in form or 'name="r"' in form
    for name, value in (("r", "32"), ("lora_alpha", "64"), ("learning_rate", "0.0003"), ("n_epochs", "2")):
        field = form[form.index(f'name="{name}"') - 200 : form.index(f'name="{name}"') + 200]
        assert f'value="{value}"' in field, (name, field)
    assert 'value="first"' in form and 'value="7"' in form
    assert client.get("/jobs/new", params={"clone": "ftjob-nope"}).status_code == 404


def test_delete_only_finished_jobs_and_everything_of_theirs(
    client: TestClient, tiny_model: str, configured
) -> None:  # type: ignore[no-untyped-def]
    job_id = create(client, model=tiny_model, training_file=make_file(client)).json()["id"]
    busy = client.delete(f"/api/v1/fine_tuning/jobs/{job_id}")
    assert busy.status_code == 409 and "cancel it before deleting it" in busy.json()["error"]["message"]
    client.post(f"/api/v1/fine_tuning/jobs/{job_id}/cancel")
    folder = configured / "artifacts" / "jobs" / job_id
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    page = client.get(f"/jobs/{job_id}").text
    assert "Yes, delete it" in page and 'id="clone"' in page
    done = client.post(f"/jobs/{job_id}/delete", follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/jobs"
    assert client.get(f"/api/v1/fine_tuning/jobs/{job_id}").status_code == 404
    assert client.get(f"/api/v1/fine_tuning/jobs/{job_id}/events").status_code == 404
    assert not folder.exists()
    assert client.delete(f"/api/v1/fine_tuning/jobs/{job_id}").status_code == 404
