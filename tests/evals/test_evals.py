"""Evals in OpenAI's shapes, driven by the official ``openai`` client against the web app, answered
by the real model server on trained tiny adapters and graded by a worker's eval runner (run here,
as a short-lane worker would)."""

import io
import json
from typing import Any

import openai
import pytest
import sacrebleu
from fastapi.testclient import TestClient
from rapidfuzz import fuzz, utils

from tests.served import Served, direct
from worker.evals.run import run_eval

pytestmark = pytest.mark.slow

ITEMS = [
    {"question": "What is 3 plus 4?", "answer": "3 plus 4 is 7."},
    {"question": "What is 2 plus 2?", "answer": "2 plus 2 is 4."},
    {"question": "What is 5 plus 1?", "answer": "5 plus 1 is 6."},
]
SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}
TOKENS = 12


def client_for(web: TestClient, served: Served) -> openai.OpenAI:
    """The official client, unchanged but for its base URL and key (over the in-process web app)."""
    return openai.OpenAI(
        api_key=served.key, base_url="http://testserver/api/v1", http_client=web, max_retries=0
    )


def criteria(judge: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "string_check",
            "name": "says plus",
            "input": "{{sample.output_text}}",
            "reference": "plus",
            "operation": "ilike",
        },
        {
            "type": "text_similarity",
            "name": "fuzzy",
            "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}",
            "evaluation_metric": "fuzzy_match",
            "pass_threshold": 0.3,
        },
        {
            "type": "text_similarity",
            "name": "bleu",
            "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}",
            "evaluation_metric": "bleu",
            "pass_threshold": 0.0,
        },
        {
            "type": "label_model",
            "name": "judge",
            "model": judge,
            "input": [
                {"role": "system", "content": "Is the answer right?"},
                {"role": "user", "content": "Q: {{item.question}}\nA: {{sample.output_text}}"},
            ],
            "labels": ["right", "wrong"],
            "passing_labels": ["right"],
        },
    ]


def test_the_official_client_creates_runs_and_reads_an_eval(served_web: TestClient, served: Served) -> None:
    client = client_for(served_web, served)
    model = served.adapters[0]
    created = client.evals.create(
        name="sums",
        metadata={"team": "qa"},
        data_source_config={"type": "custom", "item_schema": SCHEMA, "include_sample_schema": True},
        testing_criteria=criteria(served.base),  # type: ignore[arg-type]
    )
    assert created.id.startswith("eval_") and created.object == "eval" and created.name == "sums"
    assert created.data_source_config.type == "custom"
    assert created.data_source_config.schema_["properties"]["item"] == SCHEMA  # type: ignore[union-attr]
    assert [c.type for c in created.testing_criteria] == [
        "string_check",
        "text_similarity",
        "text_similarity",
        "label_model",
    ]

    items_file = client.files.create(
        file=("items.jsonl", io.BytesIO("".join(json.dumps({"item": i}) + "\n" for i in ITEMS).encode())),
        purpose="evals",
    )
    run = client.evals.runs.create(
        created.id,
        name="adapter 0",
        data_source={
            "type": "completions",
            "model": model,
            "source": {"type": "file_id", "id": items_file.id},
            "input_messages": {
                "type": "template",
                "template": [
                    {
                        "type": "message",
                        "role": "user",
                        "content": {"type": "input_text", "text": "{{item.question}}"},
                    }
                ],
            },
            "sampling_params": {"temperature": 0, "max_completion_tokens": TOKENS, "seed": 1},
        },
    )
    assert run.status == "queued" and run.object == "eval.run" and run.model == model
    assert run.report_url.endswith(f"/evals/{created.id}/runs/{run.id}")

    assert run_eval(run.id) == "completed"  # the short-lane worker's part
    done = client.evals.runs.retrieve(run.id, eval_id=created.id)
    assert done.status == "completed"
    assert done.result_counts.total == 3 and done.result_counts.errored == 0
    assert done.result_counts.passed + done.result_counts.failed == 3
    names = [r.testing_criteria for r in done.per_testing_criteria_results]
    assert [n.rsplit("-", 1)[0] for n in names] == ["says plus", "fuzzy", "bleu", "judge"]
    usage = {u.run_model_name: u for u in done.per_model_usage}
    assert usage[model].invocation_count == 3 and usage[model].completion_tokens > 0
    assert usage[served.base].invocation_count == 3  # the judge, once per item

    items = list(client.evals.runs.output_items.list(run.id, eval_id=created.id))
    assert [i.datasource_item_id for i in items] == [0, 1, 2]
    for item, source in zip(items, ITEMS, strict=True):
        answer = item.sample.output[0].content
        assert answer == direct(served, model, source["question"], max_tokens=TOKENS)  # what it alone says
        assert item.datasource_item == source
        by_name = {r.name: r for r in item.results}
        assert by_name["says plus"].passed == ("plus" in answer.lower())
        fuzzy = fuzz.WRatio(answer, source["answer"], processor=utils.default_process) / 100
        assert by_name["fuzzy"].score == pytest.approx(fuzzy)
        assert by_name["bleu"].score == pytest.approx(
            sacrebleu.sentence_bleu(answer, [source["answer"]]).score / 100
        )
        assert item.status == ("pass" if all(r.passed for r in item.results) else "fail")
    one = client.evals.runs.output_items.retrieve(items[1].id, eval_id=created.id, run_id=run.id)
    assert one.id == items[1].id and one.sample.model == model
    passing = client.evals.runs.output_items.list(run.id, eval_id=created.id, status="pass")
    assert [i.id for i in passing] == [i.id for i in items if i.status == "pass"]

    # lists page with the cursor the client sends; an eval can be renamed; a finished run is not cancelled
    second = client.evals.runs.create(
        created.id,
        data_source={
            "type": "completions",
            "model": served.adapters[1],
            "source": {"type": "file_content", "content": [{"item": ITEMS[0]}]},
            "input_messages": {
                "type": "template",
                "template": [{"role": "user", "content": "{{item.question}}"}],
            },
            "sampling_params": {"temperature": 0, "max_completion_tokens": TOKENS},
        },
    )
    page = client.evals.runs.list(created.id, limit=1)
    assert [r.id for r in page.data] == [run.id] and page.has_more
    assert [r.id for r in client.evals.runs.list(created.id)] == [run.id, second.id]
    cancelled = client.evals.runs.cancel(second.id, eval_id=created.id)
    assert cancelled.status == "canceled"
    assert run_eval(second.id) == "skipped"  # a cancelled run is not answered
    with pytest.raises(openai.ConflictError, match="already completed"):
        client.evals.runs.cancel(run.id, eval_id=created.id)
    renamed = client.evals.update(created.id, name="sums v2")
    assert renamed.name == "sums v2" and client.evals.retrieve(created.id).metadata == {"team": "qa"}
    assert created.id in [e.id for e in client.evals.list()]

    gone = client.evals.runs.delete(second.id, eval_id=created.id)
    assert gone.deleted and gone.run_id == second.id
    with pytest.raises(openai.NotFoundError):
        client.evals.runs.retrieve(second.id, eval_id=created.id)
    deleted = client.evals.delete(created.id)
    assert deleted.deleted and deleted.eval_id == created.id
    with pytest.raises(openai.NotFoundError):
        client.evals.retrieve(created.id)


def test_a_jobs_validation_split_is_a_source_and_jsonl_runs_grade_given_answers(
    served_web: TestClient, served: Served
) -> None:
    schema = {"type": "object", "properties": {"input": {"type": "string"}, "reference": {"type": "string"}}}
    body = {
        "name": "validation",
        "data_source_config": {"type": "custom", "item_schema": schema},
        "testing_criteria": [
            {
                "type": "text_similarity",
                "name": "rouge",
                "input": "{{sample.output_text}}",
                "reference": "{{item.reference}}",
                "evaluation_metric": "rouge_l",
                "pass_threshold": 0.5,
            }
        ],
    }
    eval_id = served_web.post("/api/v1/evals", json=body).json()["id"]
    job_id = served.adapters[0].split(":")[1]
    source = {"type": "job_validation", "job_id": job_id}  # tunedeck's own source
    run = served_web.post(
        f"/api/v1/evals/{eval_id}/runs",
        json={
            "data_source": {
                "type": "completions",
                "model": served.adapters[0],
                "source": source,
                "sampling_params": {"temperature": 0, "max_completion_tokens": 8},
            }
        },
    )
    assert run.status_code == 200, run.text
    assert run_eval(run.json()["id"]) == "completed"
    done = served_web.get(f"/api/v1/evals/{eval_id}/runs/{run.json()['id']}").json()
    assert done["result_counts"]["total"] == 4  # the job's 4 validation rows (a 9:1 split of 40)
    items = served_web.get(f"/api/v1/evals/{eval_id}/runs/{done['id']}/output_items").json()["data"]
    assert all(" plus " in i["datasource_item"]["input"] for i in items)
    assert all(i["sample"]["input"][-1]["content"] == i["datasource_item"]["input"] for i in items)

    given = [
        {
            "item": {"input": "What is 1 plus 1?", "reference": "1 plus 1 is 2."},
            "sample": {"output_text": "1 plus 1 is 2."},
        },
        {
            "item": {"input": "What is 1 plus 2?", "reference": "1 plus 2 is 3."},
            "sample": {"output_text": "banana"},
        },
    ]
    jsonl = served_web.post(
        f"/api/v1/evals/{eval_id}/runs",
        json={"data_source": {"type": "jsonl", "source": {"type": "file_content", "content": given}}},
    ).json()
    assert run_eval(jsonl["id"]) == "completed"
    graded = served_web.get(f"/api/v1/evals/{eval_id}/runs/{jsonl['id']}").json()
    assert graded["result_counts"] == {"total": 2, "errored": 0, "failed": 1, "passed": 1}


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        (
            {"testing_criteria": [{"type": "python", "name": "p", "source": "def grade(s, i): return 1"}]},
            422,
            "tunedeck runs no user code",
        ),
        (
            {
                "testing_criteria": [
                    {
                        "type": "text_similarity",
                        "name": "c",
                        "input": "a",
                        "reference": "b",
                        "evaluation_metric": "cosine",
                        "pass_threshold": 0.5,
                    }
                ]
            },
            422,
            "embedding model",
        ),
        (
            {
                "testing_criteria": [
                    {
                        "type": "string_check",
                        "name": "s",
                        "input": "a",
                        "reference": "b",
                        "operation": "regex",
                    }
                ]
            },
            422,
            "operation",
        ),
        ({"data_source_config": {"type": "logs"}}, 422, "tunedeck keeps none"),
        (
            {"data_source_config": {"type": "custom", "item_schema": {"type": "nonsense"}}},
            422,
            "not a JSON schema",
        ),
    ],
)
def test_evals_tunedeck_cannot_run_are_refused_with_the_reason(
    client: TestClient, change: dict[str, Any], status: int, says: str
) -> None:
    body = {
        "data_source_config": {"type": "custom", "item_schema": SCHEMA},
        "testing_criteria": criteria("tiny-llama")[:1],
        **change,
    }
    refused = client.post("/api/v1/evals", json=body)
    assert refused.status_code == status, refused.text
    assert says in refused.json()["error"]["message"]
    assert client.get("/api/v1/evals").json()["data"] == []  # nothing half-made stays behind


def test_runs_that_could_not_be_graded_as_asked_are_refused(client: TestClient, tiny_model: str) -> None:
    body = {
        "data_source_config": {"type": "custom", "item_schema": SCHEMA},
        "testing_criteria": criteria(tiny_model)[:2],
    }
    eval_id = client.post("/api/v1/evals", json=body).json()["id"]
    template = {"type": "template", "template": [{"role": "user", "content": "{{item.question}}"}]}

    def run(source: dict[str, Any], **extra: Any) -> Any:
        data_source = {
            "type": "completions",
            "model": tiny_model,
            "source": source,
            "input_messages": template,
            **extra,
        }
        return client.post(f"/api/v1/evals/{eval_id}/runs", json={"data_source": data_source})

    content = {"type": "file_content", "content": [{"item": ITEMS[0]}, {"item": {"question": "no answer"}}]}
    refused = run(content)
    assert refused.status_code == 422 and "item 1 does not match the eval's item_schema" in refused.text
    missing = dict(template, template=[{"role": "user", "content": "{{item.nope}}"}])
    refused = run({"type": "file_content", "content": [{"item": ITEMS[0]}]}, input_messages=missing)
    assert refused.status_code == 422 and "item 0 has no field 'nope'" in refused.text
    refused = run({"type": "file_content", "content": [{"item": ITEMS[0]}]}, model="no-such-model")
    assert refused.status_code == 422 and "not a served model: 'no-such-model'" in refused.text
    refused = client.post(
        f"/api/v1/evals/{eval_id}/runs",
        json={
            "data_source": {
                "type": "jsonl",
                "source": {"type": "file_content", "content": [{"item": ITEMS[0]}]},
            }
        },
    )
    assert refused.status_code == 422 and "no sample.output_text" in refused.text
    assert client.get(f"/api/v1/evals/{eval_id}/runs").json()["data"] == []

    bad = client.post(
        "/api/v1/files", files={"file": ("i.jsonl", b'{"item": {}}\n[1, 2]\n')}, data={"purpose": "evals"}
    )
    assert bad.status_code == 422 and "line 2" in bad.text
    items = client.post(
        "/api/v1/files", files={"file": ("i.jsonl", json.dumps(ITEMS[0]).encode())}, data={"purpose": "evals"}
    )
    assert items.status_code == 200 and items.json()["purpose"] == "evals"
    page = client.get(f"/datasets/{items.json()['id']}", headers={"accept": "text/html"})
    assert page.status_code == 200 and "1 item for eval runs" in page.text
    assert "What is 3 plus 4?" in page.text
    cleaning = client.get(f"/api/v1/files/{items.json()['id']}/cleaning")
    assert cleaning.status_code == 422 and "holds eval items" in cleaning.json()["error"]["message"]
    job = client.post(
        "/api/v1/fine_tuning/jobs", json={"model": tiny_model, "training_file": items.json()["id"]}
    )
    assert job.status_code == 400 and "holds eval items" in job.json()["error"]["message"]


def test_a_jobs_checkpoints_are_evaluated_from_its_page_and_the_best_is_marked(
    served_web: TestClient, served: Served
) -> None:
    schema = {"type": "object", "properties": {"input": {"type": "string"}, "reference": {"type": "string"}}}
    body = {
        "name": "checkpoints",
        "data_source_config": {"type": "custom", "item_schema": schema},
        "testing_criteria": [
            {
                "type": "text_similarity",
                "name": "rouge",
                "input": "{{sample.output_text}}",
                "reference": "{{item.reference}}",
                "evaluation_metric": "rouge_l",
                "pass_threshold": 0.3,
            }
        ],
    }
    eval_id = served_web.post("/api/v1/evals", json=body).json()["id"]
    job_id = served.adapters[1].split(":")[1]
    page = served_web.get(f"/jobs/{job_id}", headers={"accept": "text/html"}).text
    assert "No eval has run on this job's checkpoints yet." in page and 'id="evaluate-form"' in page
    started = served_web.post(f"/jobs/{job_id}/evaluate", data={"eval_id": eval_id}, follow_redirects=False)
    assert started.status_code == 303, started.text
    runs = served_web.get(f"/api/v1/evals/{eval_id}/runs").json()["data"]
    checkpoints = served_web.get(f"/api/v1/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]
    steps = sorted(c["step_number"] for c in checkpoints)
    expected = [f"tiny-llama:{job_id}:ckpt-{s}" for s in steps] + [f"tiny-llama:{job_id}"]
    assert [r["model"] for r in runs] == expected  # each checkpoint, then the final adapter
    shares = {}
    for run in runs:
        assert run_eval(run["id"]) == "completed"
        done = served_web.get(f"/api/v1/evals/{eval_id}/runs/{run['id']}").json()
        shares[run["model"]] = done["result_counts"]["passed"] / done["result_counts"]["total"]
    best = max(shares.items(), key=lambda kv: (kv[1], kv[0]))[0]
    page = served_web.get(f"/jobs/{job_id}", headers={"accept": "text/html"}).text
    assert 'id="checkpoint-matrix"' in page
    assert f'<tr data-model="{best}" class="best">' in page and page.count('class="best"') == 1
    for step in steps:
        assert f"step {step}" in page

    # a checkpoint becomes the job's adapter: the job's name serves it (and back again)
    first = f"tiny-llama:{job_id}:ckpt-{steps[0]}"
    ckpt_id = next(c["id"] for c in checkpoints if c["step_number"] == steps[0])
    question = "What is 6 plus 1?"
    before = direct(served, served.adapters[1], question)
    try:
        chosen = served_web.post(f"/api/v1/fine_tuning/jobs/{job_id}/adapter", json={"checkpoint": ckpt_id})
        assert chosen.status_code == 200, chosen.text
        assert direct(served, served.adapters[1], question) == direct(served, first, question)
        page = served_web.get(f"/jobs/{job_id}", headers={"accept": "text/html"}).text
        assert (
            f"the job&#39;s adapter (step {steps[0]})" in page
            or f"the job's adapter (step {steps[0]})" in page
        )
        events = served_web.get(f"/api/v1/fine_tuning/jobs/{job_id}/events").json()["data"]
        assert any(f"adapter is now its checkpoint at step {steps[0]}" in e["message"] for e in events)
    finally:
        served_web.post(f"/api/v1/fine_tuning/jobs/{job_id}/adapter", json={"checkpoint": None})
    assert direct(served, served.adapters[1], question) == before


def reference_logprobs(folder: Any, question: str, choices: list[str]) -> list[float]:
    """Each choice's summed log-probability as the reply, computed afresh with plain transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    out = []
    for choice in choices:
        ids = tokenizer(choice, add_special_tokens=False)["input_ids"]
        full = torch.cat([prompt, torch.tensor([ids])], dim=1)
        with torch.inference_mode():
            logits = model(input_ids=full).logits[0, prompt.shape[1] - 1 : -1]
        out.append(float(torch.log_softmax(logits, -1).gather(1, torch.tensor(ids).unsqueeze(1)).sum()))
    return out


def test_multiple_choice_items_are_graded_by_likelihood_without_generating(
    served_web: TestClient, served: Served
) -> None:
    """tunedeck's multiple_choice grader: MMLU-style rows (question, choices, answer)."""
    rows = [
        {"question": "What is 3 plus 4?", "choices": ["5", "7", "9", "12"], "answer": "B"},
        {"question": "What is 2 plus 2?", "choices": ["4", "6"], "answer": "0"},
        {"question": "What is 5 plus 1?", "choices": ["six", "seven", "eight"], "answer": "six"},
    ]
    body = {
        "name": "mmlu-style",
        "data_source_config": {"type": "custom", "item_schema": {"type": "object"}},
        "testing_criteria": [
            {
                "type": "multiple_choice",
                "name": "accuracy",
                "input": [{"role": "user", "content": "{{item.question}}"}],
                "choices": "{{item.choices}}",
                "answer": "{{item.answer}}",
            }
        ],
    }
    created = served_web.post("/api/v1/evals", json=body)
    assert created.status_code == 200, created.text
    eval_id = created.json()["id"]
    run = served_web.post(
        f"/api/v1/evals/{eval_id}/runs",
        json={
            "data_source": {
                "type": "completions",
                "model": served.base,
                "source": {"type": "file_content", "content": [{"item": r} for r in rows]},
                "input_messages": {
                    "type": "template",
                    "template": [{"role": "user", "content": "{{item.question}}"}],
                },
            }
        },
    ).json()
    assert run_eval(run["id"]) == "completed"
    items = served_web.get(f"/api/v1/evals/{eval_id}/runs/{run['id']}/output_items").json()["data"]
    right = [1, 0, 0]
    passed = 0
    for item, row, answer in zip(items, rows, right, strict=True):
        [result] = item["results"]
        expected = reference_logprobs(served.folders["tiny-llama"], row["question"], row["choices"])
        assert result["sample"]["logprobs"] == pytest.approx(expected, abs=1e-3)
        picked = max(range(len(expected)), key=lambda i: expected[i])
        assert result["sample"]["picked"] == picked and result["sample"]["right"] == answer
        assert result["passed"] == (picked == answer)
        assert item["sample"]["output"][0]["content"] == ""  # nothing was generated
        passed += result["passed"]
    done = served_web.get(f"/api/v1/evals/{eval_id}/runs/{run['id']}").json()
    assert done["result_counts"]["passed"] == passed

    refused = served_web.post(
        f"/api/v1/evals/{eval_id}/runs",
        json={
            "data_source": {
                "type": "completions",
                "model": served.base,
                "source": {"type": "file_content", "content": [{"item": {**rows[0], "choices": "A"}}]},
                "input_messages": {"type": "template", "template": [{"role": "user", "content": "q"}]},
            }
        },
    )
    assert refused.status_code == 422 and "not a list of at least two choices" in refused.text


def test_compare_shows_each_jobs_eval_scores_beside_the_curves(
    served_web: TestClient, served: Served
) -> None:
    body = {
        "name": "compare-scores",
        "data_source_config": {"type": "custom", "item_schema": SCHEMA},
        "testing_criteria": criteria(served.base)[:2],
    }
    eval_id = served_web.post("/api/v1/evals", json=body).json()["id"]
    shares = {}
    for model in served.adapters:
        run = served_web.post(
            f"/api/v1/evals/{eval_id}/runs",
            json={
                "data_source": {
                    "type": "completions",
                    "model": model,
                    "source": {"type": "file_content", "content": [{"item": i} for i in ITEMS]},
                    "input_messages": {
                        "type": "template",
                        "template": [{"role": "user", "content": "{{item.question}}"}],
                    },
                    "sampling_params": {"temperature": 0, "max_completion_tokens": TOKENS},
                }
            },
        ).json()
        assert run_eval(run["id"]) == "completed"
        done = served_web.get(f"/api/v1/evals/{eval_id}/runs/{run['id']}").json()
        shares[model.split(":")[1]] = done["result_counts"]["passed"] / 3
    jobs = list(shares)
    page = served_web.get("/compare", params=[("ids", j) for j in jobs], headers={"accept": "text/html"}).text
    row = page[page.index(f'<tr data-eval="{eval_id}">') :].split("</tr>")[0]
    for job in jobs:
        assert f"{100 * shares[job]:.0f}%" in row
    scores = page.split('id="eval-scores"')[1]
    assert "says plus</th>" in scores and "fuzzy</th>" in scores

    # the leaderboard shows each model's eval score beside its blind-vote record
    a, b = served.adapters
    vote = {"model_a": a, "model_b": b, "winner": "a", "prompt": "What is 3 plus 4?"}
    assert served_web.post("/api/v1/playground/votes", json=vote).status_code == 200
    board = served_web.get("/playground/leaderboard", headers={"accept": "text/html"}).text
    assert f'<a href="/evals/{eval_id}">compare-scores</a>' in board
    for model in (a, b):
        row = board[board.index(f'<tr data-model="{model}"') :].split("</tr>")[0]
        assert f"{100 * shares[model.split(':')[1]]:.0f}%" in row
