"""The fine-tuning jobs API: creation checks, OpenAI shapes, pagination, cancel of a queued job.

No worker runs here: jobs stay queued (the end-to-end tests run real workers)."""

import json

from fastapi.testclient import TestClient


def make_file(client: TestClient, n: int = 20) -> str:
    data = "".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(n)).encode()
    return client.post("/api/v1/files", files={"file": ("d.jsonl", data)}).json()["id"]


def create(client: TestClient, **body: object):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/fine_tuning/jobs", json=body)


def test_create_job_with_seed_defaults(client: TestClient, tiny_model: str) -> None:
    file_id = make_file(client)
    response = create(client, model=tiny_model, training_file=file_id, suffix="demo")
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["id"].startswith("ftjob-") and job["object"] == "fine_tuning.job"
    assert job["status"] == "queued" and job["seed"] == 42 and job["suffix"] == "demo"
    hp = job["hyperparameters"]
    assert (hp["r"], hp["lora_alpha"], hp["lora_dropout"], hp["target_modules"]) == (8, 8, 0.05, "attention")
    assert (hp["learning_rate"], hp["batch_size"], hp["gradient_accumulation_steps"], hp["n_epochs"]) == (
        1e-4,
        8,
        4,
        10,
    )
    assert (hp["warmup_ratio"], hp["weight_decay"], hp["max_seq_length"]) == (0.05, 0.01, 1024)
    assert job["method"]["supervised"]["hyperparameters"] == hp
    events = [e["message"] for e in client.get(f"/api/v1/fine_tuning/jobs/{job['id']}/events").json()["data"]]
    assert events[-1].startswith("Created fine-tuning job")
    # The tiny model's context is 512 < 1024, and 18 training rows are fewer than the seed's effective
    # batch of 32: the advisor says so, without blocking.
    assert [a["code"] for a in job["advice"]] == ["beyond_context", "batch_larger_than_data"]
    assert events[0].startswith("Advisor: the effective batch (32)")


def test_openai_style_hyperparameters(client: TestClient, tiny_model: str) -> None:
    file_id = make_file(client)
    body = {"n_epochs": "auto", "batch_size": 4, "learning_rate_multiplier": 2}
    job = create(
        client,
        model=tiny_model,
        training_file=file_id,
        method={"type": "supervised", "supervised": {"hyperparameters": body}},
    ).json()
    assert job["hyperparameters"]["n_epochs"] == 10
    assert job["hyperparameters"]["batch_size"] == 4
    assert job["hyperparameters"]["learning_rate"] == 2e-4


def test_bad_requests_say_what_to_fix(client: TestClient, tiny_model: str) -> None:
    file_id = make_file(client)
    unknown_model = create(client, model="gpt-9", training_file=file_id)
    assert unknown_model.status_code == 400
    assert (
        unknown_model.json()["error"]["param"] == "model"
        and "tiny-llama" in unknown_model.json()["error"]["message"]
    )
    unknown_file = create(client, model=tiny_model, training_file="file-missing")
    assert unknown_file.status_code == 400 and unknown_file.json()["error"]["param"] == "training_file"
    bad_hp = create(
        client,
        model=tiny_model,
        training_file=file_id,
        hyperparameters={"r": 0, "learning_rate": 5, "colour": 1},
    )
    assert bad_hp.status_code == 422
    fields = {d["field"] for d in bad_hp.json()["error"]["details"]}
    assert fields == {"hyperparameters.r", "hyperparameters.learning_rate", "hyperparameters.colour"}
    bad_modules = create(
        client, model=tiny_model, training_file=file_id, hyperparameters={"target_modules": "q_proj;rm -rf"}
    )
    assert bad_modules.status_code == 422 and "module names" in bad_modules.json()["error"]["message"]


def test_list_is_newest_first_with_cursor_pagination(client: TestClient, tiny_model: str) -> None:
    file_id = make_file(client)
    ids = [create(client, model=tiny_model, training_file=file_id).json()["id"] for _ in range(5)]
    first = client.get("/api/v1/fine_tuning/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in first["data"]] == ids[::-1][:2] and first["has_more"] is True
    second = client.get(
        "/api/v1/fine_tuning/jobs", params={"limit": 2, "after": first["data"][-1]["id"]}
    ).json()
    assert [j["id"] for j in second["data"]] == ids[::-1][2:4]
    last = client.get(
        "/api/v1/fine_tuning/jobs", params={"limit": 2, "after": second["data"][-1]["id"]}
    ).json()
    assert [j["id"] for j in last["data"]] == ids[:1] and last["has_more"] is False


def test_cancel_queued_job_then_cancel_again_is_409(client: TestClient, tiny_model: str) -> None:
    job_id = create(client, model=tiny_model, training_file=make_file(client)).json()["id"]
    cancelled = client.post(f"/api/v1/fine_tuning/jobs/{job_id}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None
    again = client.post(f"/api/v1/fine_tuning/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]["message"]
    assert client.get(f"/api/v1/fine_tuning/jobs/{job_id}/adapter").status_code == 404


def test_unknown_job_routes_are_404(client: TestClient) -> None:
    for path in ("", "/events", "/checkpoints", "/metrics", "/stream", "/adapter"):
        assert client.get(f"/api/v1/fine_tuning/jobs/ftjob-nope{path}").status_code == 404
    assert client.post("/api/v1/fine_tuning/jobs/ftjob-nope/cancel").status_code == 404


def test_models_lists_base_models(client: TestClient, tiny_model: str) -> None:
    models = client.get("/api/v1/models").json()["data"]
    assert [(m["id"], m["kind"]) for m in models] == [("tiny-llama", "base")]
    assert models[0]["n_params"] > 1_000_000
