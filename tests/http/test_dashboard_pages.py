"""Dashboard pages: the upload drop zone (and its no-JS form), the token-length histogram, and
each finished adapter's lineage on the models page."""

import re
from datetime import timedelta
from itertools import pairwise

import pytest
from fastapi.testclient import TestClient

from app.core.config import get_settings
from app.core.ids import new_id
from app.core.tables import Checkpoint, Job, JobStatus, Merge
from app.core.timeutil import utcnow
from app.datasets.service import histogram
from tests.factories import jsonl, upload


def test_datasets_page_has_a_drop_zone_over_a_form_that_works_without_javascript(
    client: TestClient,
) -> None:
    page = client.get("/datasets").text
    assert 'class="dropzone"' in page and "Drop a JSON, JSONL or CSV file here, or choose one" in page
    assert re.search(r'<label for="u-file"[^>]*>Drop a JSON', page)
    assert re.search(r'<input id="u-file" type="file" name="file"', page)
    assert re.search(r'<form method="post" action="/datasets" enctype="multipart/form-data"', page)
    assert '<script src="/static/js/upload.js" defer></script>' in page
    assert 'href="/static/css/datasets.css"' in page and "<progress" in page
    assert client.get("/static/js/upload.js").status_code == 200
    assert client.get("/static/css/datasets.css").status_code == 200

    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(20)]
    form = {"validation_split": "0.25", "split_seed": "3"}
    response = client.post(
        "/datasets", files={"file": ("mine.jsonl", jsonl(rows))}, data=form, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"].startswith("/datasets/file-")
    file_id = response.headers["location"].removeprefix("/datasets/")
    stored = client.get(f"/api/v1/files/{file_id}").json()
    assert (stored["filename"], stored["train_rows"], stored["validation_rows"]) == ("mine.jsonl", 15, 5)

    bad = client.post(
        "/datasets",
        files={"file": ("bad.jsonl", b'{"instruction": "a"}\n')},
        headers={"accept": "text/html"},
    )
    assert bad.status_code == 422 and 'id="upload-problems"' in bad.text and "line 1" in bad.text
    assert 'class="dropzone"' in bad.text  # the re-rendered page can upload again


def test_an_upload_over_the_limit_is_refused_with_413(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNEDECK_MAX_UPLOAD_BYTES", "64")
    get_settings.cache_clear()
    assert 'data-max-bytes="64"' in client.get("/datasets").text
    rows = [{"instruction": f"question {i}", "output": f"answer {i}"} for i in range(10)]
    response = client.post(
        "/datasets", files={"file": ("big.jsonl", jsonl(rows))}, headers={"accept": "text/html"}
    )
    assert response.status_code == 413 and "upload limit" in response.text
    assert client.get("/api/v1/files").json()["total"] == 0


def test_histogram_bins_count_every_row_and_put_an_edge_on_the_cut() -> None:
    lengths = [3, 10, 10, 40, 99, 100, 101, 150, 400, 1000]
    h = histogram(lengths, 100, bins=30)
    assert 20 <= len(h.bins) <= 32
    assert sum(b.count for b in h.bins) == len(lengths)
    assert sum(b.count for b in h.bins if b.truncated) == 4  # 101, 150, 400, 1000
    cut = [b for b in h.bins if b.high == 100]
    assert len(cut) == 1 and not cut[0].truncated and cut[0].count >= 2  # 99 and 100 are kept whole
    following = h.bins[h.bins.index(cut[0]) + 1]
    assert following.low == 101 and following.truncated
    for a, b in pairwise(h.bins):
        assert b.low == a.high + 1  # contiguous, no gaps or overlaps
    assert h.bins[0].low <= 3 and h.bins[-1].high >= 1000
    assert h.ticks and all(h.start <= t <= h.end for t in h.ticks)


def test_histogram_range_includes_the_cut_when_every_row_is_shorter() -> None:
    h = histogram([20, 30, 31, 45], 1024)
    assert h.bins[-1].high == 1024 and not any(b.truncated for b in h.bins)
    assert sum(b.count for b in h.bins) == 4 and len(h.bins) <= 31
    all_cut = histogram([2000, 2100], 1024)
    assert all_cut.bins[0].low <= 1024 and sum(b.count for b in all_cut.bins if b.truncated) == 2
    assert histogram([], 512).bins == []
    assert [(b.low, b.high, b.count) for b in histogram([7], 7).bins] == [(7, 7, 1)]


def test_dataset_page_and_stats_api_show_the_histogram(client: TestClient, tiny_model: str) -> None:
    rows = [{"instruction": "word " * (5 * i + 1), "output": f"answer {i}"} for i in range(24)]
    file_id = upload(client, rows)
    page = client.get(f"/datasets/{file_id}", params={"max_seq_length": 64}).text
    svg = page[page.index('<figure class="histogram"') : page.index("</figure>")]
    assert "<svg" in svg and 'role="img"' in svg
    assert 'data-max-seq-length="64"' in svg and "max_seq_length 64</text>" in svg
    assert 'stroke="#dc2626"' in svg and "stroke-dasharray" in svg
    bars = re.findall(r'<rect class="bar( bar-truncated)?" data-count="(\d+)"', svg)
    assert sum(int(n) for _, n in bars) == 24
    truncated = int(re.search(r"truncated at 64</dt><dd>(\d+)</dd>", page).group(1))  # type: ignore[union-attr]
    assert truncated > 0 and sum(int(n) for cls, n in bars if cls) == truncated
    assert re.search(r"<title>\d+–\d+ tokens: \d+ rows?( \(truncated\))?</title>", svg)
    assert svg.count("<text") >= 4  # tick labels, the cut label, the axis title

    params = {"model": tiny_model, "max_seq_length": 64}
    stats = client.get(f"/api/v1/files/{file_id}/stats", params=params).json()
    assert stats["histogram"]["max_seq_length"] == 64
    bins = stats["histogram"]["bins"]
    assert sum(b["count"] for b in bins) == 24
    assert sum(b["count"] for b in bins if b["truncated"]) == stats["truncated"] == truncated
    assert "lengths" not in stats


def test_models_page_shows_each_adapters_lineage(client: TestClient, tiny_model: str) -> None:
    from app.core.db import session_scope

    rows = [{"instruction": f"Question {i}?", "output": f"The answer is {i}."} for i in range(12)]
    rows.append({"instruction": "Say yes", "output": "Yes"})
    parent_id = upload(client, rows, filename="sums.jsonl")
    cleaned = client.post(f"/api/v1/files/{parent_id}/clean", json={"filters": ["short_outputs"]}).json()
    finished = utcnow()
    spec = {"r": 16, "lora_alpha": 32, "learning_rate": 0.0002, "n_epochs": 3}
    spec |= {"quantization": "4bit", "task_type": "CAUSAL_LM"}
    with session_scope() as session:
        done = Job(
            id=new_id("ftjob"),
            model=tiny_model,
            training_file=cleaned["id"],
            suffix="sums",
            hyperparameters=spec,
            status=JobStatus.succeeded,
            finished_at=finished,
            train_loss=0.4321,
            valid_loss=0.5678,
            trained_tokens=123456,
            fine_tuned_model=f"ft:{tiny_model}:sums",
        )
        plain = Job(
            id=new_id("ftjob"),
            model=tiny_model,
            training_file=parent_id,
            hyperparameters={"r": 8},
            status=JobStatus.succeeded,
            finished_at=finished - timedelta(minutes=5),
        )
        running = Job(id=new_id("ftjob"), model=tiny_model, training_file=parent_id, status=JobStatus.running)
        session.add_all([done, plain, running])
        session.flush()
        for step in (10, 20):
            session.add(Checkpoint(id=new_id("ftckpt"), job_id=done.id, step=step, artifact_key=f"k/{step}"))
        session.add(Merge(id=new_id("merge"), job_id=done.id, status="succeeded", artifact_key="m/1"))
        session.add(Merge(id=new_id("merge"), job_id=plain.id, status="failed"))

    page = client.get("/models").text
    assert f'<td data-adapters="{tiny_model}">2</td>' in page
    assert running.id not in page
    row = page[page.index(f'id="lineage-{done.id}"') : page.index(f'id="lineage-{plain.id}"')]
    assert f'<a href="/datasets/{cleaned["id"]}">sums.jsonl (clean v2)</a>' in row and "version 2" in row
    assert f'cleaned from <a href="/datasets/{parent_id}">sums.jsonl</a> (version 1)' in row
    assert f'<a href="/jobs/{done.id}">' in row and "suffix <code>sums</code>" in row
    config = ("r 16", "lora_alpha 32", "learning_rate 0.0002", "n_epochs 3", "quantization 4bit")
    for text in (*config, "CAUSAL_LM"):
        assert text in row, text
    assert "train loss 0.4321" in row and "validation loss 0.5678" in row and "123,456" in row
    assert f'href="/api/v1/fine_tuning/jobs/{done.id}/merged"' in row and "2 checkpoints" in row
    other = page[page.index(f'id="lineage-{plain.id}"') :]
    other = other[: other.index("</tr>")]
    assert "not merged" in other and "0 checkpoints" in other and "cleaned from" not in other
    assert f'<a href="/datasets/{parent_id}">sums.jsonl</a>' in other
