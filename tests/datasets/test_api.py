"""Uploading datasets over the REST API: validation, dedupe, split, stats, preview."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from app.core.db import read_session
from app.core.tables import DatasetFile
from tests.factories import jsonl


def rows(n: int) -> list[dict[str, str]]:
    return [{"instruction": f"Question {i}?", "input": "", "output": f"Answer {i}."} for i in range(n)]


def upload(client: TestClient, data: bytes, name: str = "d.jsonl", **form: str):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/files", files={"file": (name, data)}, data={"purpose": "fine-tune", **form})


def stored_nothing(data_dir: Path) -> bool:
    with read_session() as session:
        count = len(session.exec(select(DatasetFile)).all())
    folder = data_dir / "artifacts" / "files"
    return count == 0 and (not folder.exists() or not any(folder.iterdir()))


def test_upload_dedupes_and_splits_9_to_1(client: TestClient) -> None:
    data = jsonl(rows(50) + rows(5))
    response = upload(client, data)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"].startswith("file-") and body["object"] == "file"
    assert (body["rows"], body["duplicates_removed"]) == (50, 5)
    assert (body["train_rows"], body["validation_rows"]) == (45, 5)
    again = upload(client, data).json()
    assert again["id"] != body["id"]
    train = client.get(f"/api/v1/files/{again['id']}/rows", params={"split": "validation"}).json()["rows"]
    first = client.get(f"/api/v1/files/{body['id']}/rows", params={"split": "validation"}).json()["rows"]
    assert train == first  # the same seed gives the same split


def test_split_ratio_and_seed_are_configurable(client: TestClient) -> None:
    body = upload(client, jsonl(rows(40)), validation_split="0.25", split_seed="7").json()
    assert (body["train_rows"], body["validation_rows"]) == (30, 10)
    none = upload(client, jsonl(rows(10)), validation_split="0").json()
    assert (none["train_rows"], none["validation_rows"]) == (10, 0)


@pytest.mark.parametrize(
    ("data", "name", "line", "field"),
    [
        (
            b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff", "output": "b"}\n',
            "d.jsonl",
            2,
            None,
        ),
        (b'{"instruction": "a", "output": "b"}\n{"instruction": "a", "output"\n', "d.jsonl", 2, None),
        (b'{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n', "d.jsonl", 2, "output"),
        (b'{"instruction": "", "output": "b"}\n', "d.jsonl", 1, "instruction"),
        (b'{"instruction": "a", "output": ["b"]}\n', "d.jsonl", 1, "output"),
        (b"", "d.jsonl", 0, None),
        (b"instruction,input,output\na,,b\n,,c\n", "d.csv", 3, "instruction"),
        (b'instruction,input,output\na,,b\na,"b"c,d\n', "d.csv", 3, None),
        (b"instruction,input\na,b\n", "d.csv", 1, None),
        (b'[{"instruction": "a", "output": "b"},\n{"instruction": "a" "output": "b"}]', "d.json", 2, None),
        (b" \n\n", "d.jsonl", 0, None),
    ],
    ids=[
        "invalid-utf8",
        "broken-json",
        "missing-output",
        "empty-instruction",
        "wrong-type",
        "empty-file",
        "csv-empty",
        "broken-csv",
        "csv-missing-column",
        "broken-json-array",
        "blank-lines-only",
    ],
)
def test_bad_datasets_get_422_with_line_and_nothing_is_stored(
    client: TestClient, configured: Path, data: bytes, name: str, line: int, field: str | None
) -> None:
    response = upload(client, data, name)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_file" and error["param"] == "file"
    assert error["details"][0]["line"] == line and error["details"][0]["field"] == field
    assert (f"line {line}" if line else "file") in error["message"]
    assert stored_nothing(configured)


def test_upload_over_the_size_limit_is_413(
    client: TestClient, configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.core.config import get_settings

    monkeypatch.setenv("TUNEDECK_MAX_UPLOAD_BYTES", "1000")
    get_settings.cache_clear()
    response = upload(client, jsonl(rows(100)))
    assert response.status_code == 413 and "upload limit" in response.json()["error"]["message"]
    assert stored_nothing(configured)


def test_token_stats_use_the_model_tokenizer_after_the_chat_template(
    client: TestClient, tiny_model: str
) -> None:
    long_row = {"instruction": "Repeat", "input": "", "output": "word " * 300}
    file_id = upload(client, jsonl([*rows(19), long_row])).json()["id"]
    stats = client.get(
        f"/api/v1/files/{file_id}/stats", params={"model": tiny_model, "max_seq_length": 128}
    ).json()
    assert stats["rows"] == 20
    assert stats["min"] > 20  # the template's system prompt and role markers count
    assert stats["max"] > 300 and stats["truncated"] == 1
    assert stats["min"] <= stats["median"] <= stats["p95"] <= stats["max"]
    unknown = client.get(f"/api/v1/files/{file_id}/stats", params={"model": "nope"})
    assert unknown.status_code == 404 and "tiny-llama" in unknown.json()["error"]["message"]


def test_preview_pages(client: TestClient) -> None:
    file_id = upload(client, jsonl(rows(50)), validation_split="0").json()["id"]
    page = client.get(f"/api/v1/files/{file_id}/rows", params={"page": 3}).json()
    assert page["pages"] == 3 and len(page["rows"]) == 10
    assert page["rows"][0] == {"instruction": "Question 40?", "input": "", "output": "Answer 40."}


def test_unknown_file_is_404(client: TestClient) -> None:
    response = client.get("/api/v1/files/file-nope")
    assert response.status_code == 404
    assert response.json()["error"] == {
        "message": "no file with id 'file-nope'",
        "type": "not_found_error",
        "param": None,
        "code": "not_found",
    }
