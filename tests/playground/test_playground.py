"""The playground: blind votes (stored, validated, summed into a leaderboard with each model's
record against its base), batch comparisons run end to end against the real model server with
safe CSV/JSONL exports and escaped tables, and the page with the served models in its pickers."""

import csv
import io
import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.core.ids import new_id
from app.core.tables import Job, JobStatus
from tests.e2e.support import wait_for
from tests.served import NEW_TOKENS, QUESTION, Served, direct
from worker.batches import run_batch

PROMPTS = [QUESTION[0]["content"], "=SUM(A1)", "<script>alert(1)</script> Say hi"]


def succeeded_job(base: str) -> str:
    """A finished chat job whose adapter the catalog serves as ``<base>:<job>``."""
    from app.core.db import session_scope

    job_id = new_id("ftjob")
    with session_scope() as session:
        session.add(
            Job(
                id=job_id,
                model=base,
                training_file="file-x",
                status=JobStatus.succeeded,
                adapter_key=f"jobs/{job_id}/adapter",
            )
        )
    return f"{base}:{job_id}"


@pytest.fixture
def adapters(tiny_model: str) -> list[str]:
    return [succeeded_job(tiny_model), succeeded_job(tiny_model)]


def vote(client: TestClient, a: str, b: str, winner: str, prompt: str = "hi") -> httpx.Response:
    body = {"model_a": a, "model_b": b, "winner": winner, "prompt": prompt}
    return client.post("/api/v1/playground/votes", json=body)


def test_votes_are_stored_and_validated(client: TestClient, tiny_model: str, adapters: list[str]) -> None:
    stored = vote(client, adapters[0], tiny_model, "a", "x" * 5000)
    assert stored.status_code == 200, stored.text
    assert stored.json()["id"].startswith("vote-") and len(stored.json()["prompt"]) == 2000

    unknown_winner = vote(client, adapters[0], tiny_model, "c")
    assert unknown_winner.status_code == 422 and unknown_winner.json()["error"]["param"] == "winner"
    same = vote(client, tiny_model, tiny_model, "tie")
    assert same.status_code == 422 and "different" in same.json()["error"]["message"]
    missing = vote(client, "tiny-llama:ftjob-nope", tiny_model, "b")
    assert missing.status_code == 422
    assert "not a served model: 'tiny-llama:ftjob-nope'" in missing.json()["error"]["message"]
    assert client.get("/api/v1/playground/votes/summary").json()["votes"] == 1


def test_the_summary_counts_wins_losses_ties_and_head_to_head_against_the_base(
    client: TestClient, tiny_model: str, adapters: list[str]
) -> None:
    one, two = adapters
    for a, b, winner in [
        (one, tiny_model, "a"),
        (one, tiny_model, "a"),
        (tiny_model, one, "a"),
        (one, tiny_model, "tie"),
        (two, one, "a"),
        (two, tiny_model, "b"),
    ]:
        assert vote(client, a, b, winner).status_code == 200
    summary = client.get("/api/v1/playground/votes/summary").json()
    assert summary["votes"] == 6
    rows = {row["model"]: row for row in summary["data"]}
    assert {k: rows[one][k] for k in ("wins", "losses", "ties", "games")} == {
        "wins": 2,
        "losses": 2,
        "ties": 1,
        "games": 5,
    }
    assert rows[one]["win_rate"] == pytest.approx(2.5 / 5)
    assert rows[one]["vs_base"] == {
        "opponent": tiny_model,
        "wins": 2,
        "losses": 1,
        "ties": 1,
        "games": 4,
        "win_rate": pytest.approx(2.5 / 4),
    }
    assert (rows[tiny_model]["wins"], rows[tiny_model]["losses"], rows[tiny_model]["ties"]) == (2, 2, 1)
    assert rows[tiny_model]["vs_base"] is None  # a base has no base
    assert (rows[two]["wins"], rows[two]["losses"], rows[two]["games"]) == (1, 1, 2)
    assert rows[two]["vs_base"]["games"] == 1 and rows[two]["vs_base"]["win_rate"] == 0

    board = client.get("/playground/leaderboard")
    assert board.status_code == 200 and 'data-votes="6"' in board.text
    assert "2–1–1" in board.text  # the first adapter against its base


def test_batch_requests_are_validated(client: TestClient, tiny_model: str, adapters: list[str]) -> None:
    url = "/api/v1/playground/batches"
    one = client.post(url, json={"models": [tiny_model], "prompts": ["hi"]})
    assert one.status_code == 422 and one.json()["error"]["param"] == "models"
    both = client.post(url, json={"models": adapters, "prompts": ["hi"], "source": {"job_id": "ftjob-x"}})
    assert both.status_code == 422
    unknown = client.post(url, json={"models": [tiny_model, "nope"], "prompts": ["hi"]})
    assert unknown.status_code == 422 and "'nope'" in unknown.json()["error"]["message"]
    blank = client.post(url, json={"models": adapters, "prompts": [" ", ""]})
    assert blank.status_code == 422 and blank.json()["error"]["param"] == "prompts"
    too_many = client.post(url, json={"models": adapters, "prompts": ["q"] * 101})
    assert too_many.status_code == 422
    no_job = client.post(url, json={"models": adapters, "source": {"job_id": "ftjob-nope"}})
    assert no_job.status_code == 404


def test_a_batch_fails_with_a_message_when_the_model_server_is_down(
    client: TestClient, tiny_model: str, adapters: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.core.config import get_settings

    monkeypatch.setenv("TUNEDECK_MODEL_SERVER_URL", "http://127.0.0.1:9")  # nothing listens there
    get_settings.cache_clear()
    created = client.post("/api/v1/playground/batches", json={"models": adapters, "prompts": ["hi"]})
    assert created.status_code == 200, created.text
    url = f"/api/v1/playground/batches/{created.json()['id']}"
    assert client.get(url).json()["status"] == "queued"  # nothing in the web app runs it
    assert run_batch(created.json()["id"]) == "failed"  # what the short-lane worker does with its task
    batch = client.get(url).json()
    assert "not reachable" in batch["error"] and batch["progress"] == 0


def test_a_batch_is_read_only_by_the_member_who_made_it_and_admins(
    client: TestClient, tiny_model: str, adapters: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answers come from the models its maker could see: to another member it does not exist."""
    from app.core.config import get_settings
    from tests.accounts import bearer, make_user

    monkeypatch.setenv("TUNEDECK_MODEL_SERVER_URL", "http://127.0.0.1:9")  # nothing listens there
    get_settings.cache_clear()
    mine = TestClient(client.app, headers=bearer(make_user("bea", "member")))
    theirs = TestClient(client.app, headers=bearer(make_user("carl", "member")))
    created = mine.post("/api/v1/playground/batches", json={"models": adapters, "prompts": ["hi"]})
    assert created.status_code == 200, created.text
    url = f"/api/v1/playground/batches/{created.json()['id']}"
    for path in (url, url + "/export.csv", url + "/export.jsonl", url.replace("/api/v1", "")):
        assert mine.get(path).status_code == 200, path
        assert client.get(path).status_code == 200, path  # the admin
        assert theirs.get(path).status_code == 404, path  # the same answer as for no such batch


def test_a_batch_whose_worker_died_is_taken_again_and_keeps_its_answers(
    client: TestClient, tiny_model: str, adapters: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from app.core.config import get_settings
    from app.core.db import session_scope
    from app.core.tables import BatchOutput, BatchRun, BatchStatus
    from app.core.timeutil import utcnow
    from worker.batches import STALE_AFTER, lost_batches

    monkeypatch.setenv("TUNEDECK_MODEL_SERVER_URL", "http://127.0.0.1:9")  # nothing listens there
    get_settings.cache_clear()
    heard = {"batch-left": utcnow() - STALE_AFTER - timedelta(seconds=5), "batch-busy": utcnow()}
    with session_scope() as session:  # a worker killed mid-batch, and one still at work
        for batch_id, heartbeat in heard.items():
            session.add(
                BatchRun(
                    id=batch_id,
                    models=adapters,
                    status=BatchStatus.running,
                    total=2,
                    progress=1,
                    heartbeat_at=heartbeat,
                )
            )
            session.flush()
            session.add(
                BatchOutput(batch_id=batch_id, prompt_index=0, model=adapters[0], prompt="hi", output="x")
            )
            session.add(BatchOutput(batch_id=batch_id, prompt_index=0, model=adapters[1], prompt="hi"))
    assert lost_batches() == ["batch-left"]  # the sweep sends it again; the busy one is left alone
    assert run_batch("batch-busy") == "skipped"
    assert run_batch("batch-left") == "failed"  # it asked only the open cell
    batch = client.get("/api/v1/playground/batches/batch-left").json()
    assert "not reachable" in batch["error"] and batch["progress"] == 1  # the answered cell was kept
    assert run_batch("batch-left") == "skipped"  # a repeated task does nothing


def test_the_page_renders_without_any_served_model(client: TestClient) -> None:
    page = client.get("/playground")
    assert page.status_code == 200 and "No model is served yet" in page.text
    assert 'href="/playground"' in page.text  # the nav link


# ---- against the real model server ----------------------------------------------------------


def finished(served_web: TestClient, batch_id: str) -> dict[str, Any]:
    """The batch after the short lane answered it (run here, as its worker would)."""
    run_batch(batch_id)
    url = f"/api/v1/playground/batches/{batch_id}"
    return wait_for(
        lambda: (b := served_web.get(url).json())["status"] in ("succeeded", "failed") and b,
        timeout=180,
        message="the batch",
    )


@pytest.mark.slow
def test_a_batch_compares_models_end_to_end_and_exports_safely(
    served_web: TestClient, served: Served, references: dict[str, str]
) -> None:
    models = ["tiny-llama", served.adapters[0]]
    body = {"models": models, "prompts": PROMPTS, "max_tokens": NEW_TOKENS, "temperature": 0}
    created = served_web.post("/api/v1/playground/batches", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "queued" and created.json()["total"] == 6
    batch = finished(served_web, created.json()["id"])
    assert batch["status"] == "succeeded", batch["error"]
    assert batch["progress"] == 6 and [r["prompt"] for r in batch["rows"]] == PROMPTS
    for row in batch["rows"]:
        assert list(row["outputs"]) == models
        for model in models:
            cell = row["outputs"][model]
            assert cell["output"] == direct(served, model, row["prompt"]), (model, row["prompt"])
            assert cell["latency_s"] > 0
    question = {m: cell["output"] for m, cell in batch["rows"][0]["outputs"].items()}
    assert question["tiny-llama"] == references["tiny-llama"]
    assert question[served.adapters[0]] == references[served.adapters[0]]
    assert question["tiny-llama"] != question[served.adapters[0]]  # the adapter changed the answer

    exported = served_web.get(f"/api/v1/playground/batches/{batch['id']}/export.csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(exported.text)))
    assert table[0] == ["prompt", *models] and len(table) == 4
    assert table[2][0] == "'=SUM(A1)"
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for line in table for cell in line)

    lines = served_web.get(f"/api/v1/playground/batches/{batch['id']}/export.jsonl").text.splitlines()
    objects = [json.loads(line) for line in lines]
    assert [o["prompt"] for o in objects] == PROMPTS
    assert objects[0]["outputs"] == {m: question[m] for m in models}

    html = served_web.get(f"/playground/batches/{batch['id']}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Say hi" in html and "<script>alert" not in html
    assert "hx-trigger" not in html and "export.csv" in html  # finished: no more polling


@pytest.mark.slow
def test_a_batch_takes_its_prompts_from_a_jobs_validation_split(
    served_web: TestClient, served: Served
) -> None:
    job_id = served.adapters[0].split(":")[1]
    body = {"models": served.adapters, "source": {"job_id": job_id}, "limit": 2, "max_tokens": 3}
    created = served_web.post("/api/v1/playground/batches", json=body)
    assert created.status_code == 200, created.text
    batch = finished(served_web, created.json()["id"])
    assert batch["status"] == "succeeded" and batch["source_job"] == job_id
    prompts = [row["prompt"] for row in batch["rows"]]
    assert len(prompts) == 2 and all(p.startswith("What is ") and p.endswith("?") for p in prompts)


@pytest.mark.slow
def test_the_page_lists_every_served_model_in_its_pickers(served_web: TestClient, served: Served) -> None:
    page = served_web.get("/playground")
    assert page.status_code == 200
    for name in ("tiny-llama", *served.adapters, served.checkpoint, served.merged):
        assert f'<option value="{name}">' in page.text
    for group in ("Base models", "Adapters", "Checkpoints", "Merged"):
        assert f'<optgroup label="{group}">' in page.text
    assert f'data-defaults="tiny-llama,{served.adapters[1]}"' in page.text  # the newest adapter
    assert '<script src="/static/js/playground.js">' in page.text
    blind = served_web.get("/playground", params={"blind": 1})
    assert 'data-blind="1"' in blind.text and 'name="candidate"' in blind.text


def judge_says(served: Served, judge: str, prompt: str, first: str, second: str) -> str:
    """The judge's verdict for one order, asked straight at the model server."""
    from worker.judging import RULES, verdict

    content = f"Request:\n{prompt}\n\nAnswer A:\n{first}\n\nAnswer B:\n{second}"
    body = {
        "model": judge,
        "messages": [{"role": "system", "content": RULES}, {"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": 4,
    }
    reply = httpx.post(served.url + "/v1/chat/completions", json=body, timeout=120, headers=served.auth)
    return str(verdict(reply.json()["choices"][0]["message"]["content"]))


@pytest.mark.slow
def test_a_judge_model_compares_a_batch_pairwise_in_both_orders(
    served_web: TestClient, served: Served
) -> None:
    from worker.judging import judge_batch

    models = list(served.adapters)
    body = {"models": models, "prompts": PROMPTS[:2], "max_tokens": NEW_TOKENS, "temperature": 0}
    batch = finished(served_web, served_web.post("/api/v1/playground/batches", json=body).json()["id"])
    people = served_web.get("/api/v1/playground/votes/summary").json()["votes"]
    asked = served_web.post(f"/api/v1/playground/batches/{batch['id']}/judge", json={"model": served.base})
    assert asked.status_code == 200 and asked.json()["judge_status"] == "queued", asked.text
    assert judge_batch(batch["id"]) == "succeeded"
    assert judge_batch(batch["id"]) == "skipped"  # a redelivered task does not judge twice
    judged = served_web.get("/api/v1/playground/votes/summary", params={"judged": "true"}).json()
    assert judged["votes"] == 2  # 2 prompts × 1 pair
    wins = {m: 0.0 for m in models}
    for row in batch["rows"]:
        x, y = (row["outputs"][m]["output"] for m in models)
        one = judge_says(served, served.base, row["prompt"], x, y)
        two = {"a": "b", "b": "a"}.get(judge_says(served, served.base, row["prompt"], y, x), "tie")
        winner = one if one in ("a", "b") and one == two else "tie"
        if winner == "tie":
            wins[models[0]] += 0.5
            wins[models[1]] += 0.5
        else:
            wins[models[0 if winner == "a" else 1]] += 1
    by_model = {s["model"]: s for s in judged["data"]}
    for model in models:
        assert by_model[model]["win_rate"] == pytest.approx(wins[model] / 2)
    assert served_web.get("/api/v1/playground/votes/summary").json()["votes"] == people  # people's apart
    board = served_web.get("/playground/leaderboard", headers={"accept": "text/html"}).text
    assert "Judge win rate" in board
    table = served_web.get(f"/playground/batches/{batch['id']}", headers={"accept": "text/html"}).text
    assert f"Judge <code>{served.base}</code>: succeeded" in table
