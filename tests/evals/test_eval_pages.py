"""The evals pages as a user reads them: the list and its new-eval form, an eval's runs and its
run-against-models form, a run's scores and items (failures first on request), and runs compared
side by side."""

import re

from fastapi.testclient import TestClient

from worker.evals.run import run_eval

HTML = {"accept": "text/html"}
ANSWERS = [
    ("1 plus 1 is 2.", "1 plus 1 is 2."),
    ("1 plus 2 is 3.", "banana"),
    ("2 plus 2 is 4.", "2 plus 2 is 4."),
]


def make_eval(client: TestClient) -> str:
    form = {
        "name": "sums",
        "item_fields": "question, answer",
        "c0_type": "text_similarity",
        "c0_name": "close",
        "c0_input": "{{sample.output_text}}",
        "c0_reference": "{{item.answer}}",
        "c0_metric": "rouge_l",
        "c0_threshold": "0.6",
        "c1_type": "string_check",
        "c1_name": "exact",
        "c1_input": "{{sample.output_text}}",
        "c1_reference": "{{item.answer}}",
        "c1_operation": "eq",
    }
    made = client.post("/evals", data=form, headers=HTML, follow_redirects=False)
    assert made.status_code == 303, made.text
    return made.headers["location"].rsplit("/", 1)[1]


def graded_run(client: TestClient, eval_id: str, wrong: str = "banana") -> str:
    content = [
        {
            "item": {"question": f"What is {a}?", "answer": ref},
            "sample": {"output_text": out if out != "banana" else wrong},
        }
        for a, (ref, out) in zip("xyz", ANSWERS, strict=True)
    ]
    body = {"data_source": {"type": "jsonl", "source": {"type": "file_content", "content": content}}}
    run_id = client.post(f"/api/v1/evals/{eval_id}/runs", json=body).json()["id"]
    assert run_eval(run_id) == "completed"
    return str(run_id)


def test_an_eval_made_in_the_form_shows_its_runs_scores_and_failing_items(client: TestClient) -> None:
    eval_id = make_eval(client)
    listed = client.get("/evals", headers=HTML).text
    assert f'href="/evals/{eval_id}"' in listed and ">close<" in listed and ">exact<" in listed
    run_id = graded_run(client, eval_id)

    page = client.get(f"/evals/{eval_id}", headers=HTML).text
    row = re.search(rf'<tr data-run="{run_id}">.*?</tr>', page, re.S)
    assert row and "2 / 3" in row.group(0) and "67%" in row.group(0)  # both criteria: 2 of 3 pass

    run = client.get(f"/evals/{eval_id}/runs/{run_id}", headers=HTML).text
    assert "<strong>2</strong> passed · 1 failed" in run and 'data-status="completed"' in run
    assert "hx-trigger" not in run  # finished: no more polling
    assert run.count('class="item-pass"') == 2 and run.count('class="item-fail"') == 1
    failures = client.get(f"/evals/{eval_id}/runs/{run_id}?failures=true", headers=HTML).text
    assert failures.count('class="item-fail"') == 1 and 'class="item-pass"' not in failures
    assert "banana" in failures
    by_score = client.get(f"/evals/{eval_id}/runs/{run_id}?sort=score", headers=HTML).text
    assert by_score.index('data-item="1"') < by_score.index('data-item="0"')  # the failure first

    other = graded_run(client, eval_id, wrong="1 plus 2 is 3.")
    compare = client.get(f"/evals/{eval_id}/compare?run={run_id}&run={other}", headers=HTML).text
    assert compare.count('<td class="eval-cell">') >= 9  # 3 items × (item + 2 runs)
    assert "banana" in compare and "3 / 3" in compare


def test_the_run_form_starts_one_run_per_model_and_says_what_is_wrong(
    client: TestClient, tiny_model: str
) -> None:
    eval_id = make_eval(client)
    items = client.post(
        "/api/v1/files",
        files={"file": ("items.jsonl", b'{"item": {"question": "What is 1 plus 1?", "answer": "2"}}\n')},
        data={"purpose": "evals"},
    ).json()["id"]
    page = client.get(f"/evals/{eval_id}", headers=HTML).text
    assert f'value="file:{items}"' in page and f'<option value="{tiny_model}">' in page
    form = {
        "models": [tiny_model],
        "source": f"file:{items}",
        "prompt": "{{item.question}}",
        "max_tokens": "8",
    }
    started = client.post(f"/evals/{eval_id}/runs", data=form, headers=HTML, follow_redirects=False)
    assert started.status_code == 303 and "/runs/evalrun_" in started.headers["location"]
    runs = client.get(f"/api/v1/evals/{eval_id}/runs").json()["data"]
    assert [r["model"] for r in runs] == [tiny_model] and runs[0]["status"] == "queued"
    queued = client.get(started.headers["location"], headers=HTML).text
    assert 'hx-trigger="every 2s"' in queued and "Cancel run" in queued

    refused = client.post(f"/evals/{eval_id}/runs", data={**form, "prompt": "{{item.nope}}"}, headers=HTML)
    assert refused.status_code == 422 and "item 0 has no field &#39;nope&#39;" in refused.text
    none = client.post(
        f"/evals/{eval_id}/runs", data={k: v for k, v in form.items() if k != "models"}, headers=HTML
    )
    assert none.status_code == 422 and "choose 1 to 6 models" in none.text
    assert len(client.get(f"/api/v1/evals/{eval_id}/runs").json()["data"]) == 1  # nothing half-made

    bad = client.post(
        "/evals",
        data={"name": "x", "item_fields": "q", "c0_type": "text_similarity", "c0_metric": "cosine"},
        headers=HTML,
    )
    assert bad.status_code == 422 and "embedding model" in bad.text
