"""The classification format: JSONL, JSON and CSV rows of text and label, every bad row named
by its line and field; token stats count the text alone and the preview shows text and label."""

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.datasets.parsing import DatasetInvalid, parse_dataset


def problems(data: bytes, filename: str = "d.jsonl") -> list[tuple[int, str | None, str]]:
    with pytest.raises(DatasetInvalid) as info:
        parse_dataset(data, filename)
    return [(p.line, p.field, p.message) for p in info.value.problems]


def jsonl(*rows: object) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


GOOD = {"text": "a good film", "label": "positive"}


def test_jsonl_json_and_csv_parse_to_the_same_rows_with_labels_as_strings() -> None:
    rows = [GOOD, {"text": "a bad film", "label": 0}]
    as_jsonl = parse_dataset(jsonl(*rows), "a.jsonl")
    as_json = parse_dataset(json.dumps(rows, indent=2).encode(), "a.json")
    as_csv = parse_dataset(b"text,label\na good film,positive\na bad film,0\n", "a.csv")
    assert as_jsonl.format == as_json.format == as_csv.format == "classification"
    assert as_jsonl.rows == as_json.rows == as_csv.rows == [GOOD, {"text": "a bad film", "label": "0"}]


def test_missing_empty_and_wrong_typed_fields_name_line_and_field() -> None:
    data = jsonl(
        GOOD,
        {"text": "no label"},
        {"label": "x"},
        {"text": " ", "label": "x"},
        {"text": "t", "label": ""},
        {"text": 3, "label": "x"},
        {"text": "t", "label": True},
        {"text": "t", "label": 1.5},
        {"text": "t", "label": ["a"]},
        {},
    )
    assert problems(data) == [
        (2, "label", "missing (every row needs text and label)"),
        (3, "text", "missing (every row needs text and label)"),
        (4, "text", "is empty"),
        (5, "label", "is empty"),
        (6, "text", "must be a string, got a number"),
        (7, "label", "must be a string or a whole number, got true/false"),
        (8, "label", "must be a string or a whole number, got a number"),
        (9, "label", "must be a string or a whole number, got a list"),
        (10, "text", "missing (every row needs text and label)"),
        (10, "label", "missing (every row needs text and label)"),
    ]


def test_mixing_formats_is_refused_on_the_line_that_switches() -> None:
    data = jsonl(GOOD, {"instruction": "Say hi", "output": "hi"}, GOOD | {"text": "other"})
    assert problems(data) == [(2, None, "row is in instruction format but earlier rows are classification")]
    data = jsonl({"instruction": "Say hi", "output": "hi"}, GOOD)
    assert problems(data) == [(2, None, "row is in classification format but earlier rows are instruction")]


def test_csv_lines_header_and_empty_cells() -> None:
    data = b'text,label\ngood one,pos\n"multi\nline text",\n,neg\nbad one,neg,extra\n'
    assert problems(data, "d.csv") == [
        (4, "label", "is empty"),  # the quoted cell spans lines 3-4; the reader names its last line
        (5, "text", "is empty"),
        (6, None, "more cells than header columns"),
    ]
    [(line, _, message)] = problems(b"text,category\nhi,x\n", "d.csv")
    assert line == 1 and "text, label for classification" in message and "['label']" in message


def test_token_stats_count_the_text_alone_and_the_preview_shows_text_and_label(
    client: TestClient, tiny_model: str, tiny_model_dir: Path
) -> None:
    from tokenizers import Tokenizer

    rows = [GOOD, {"text": "a much longer text about a film that was bad", "label": "negative"}]
    data = jsonl(*rows)
    file_id = client.post(
        "/api/v1/files", files={"file": ("c.jsonl", data)}, data={"validation_split": "0"}
    ).json()["id"]
    stats = client.get(f"/api/v1/files/{file_id}/stats", params={"model": tiny_model}).json()
    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    lengths = sorted(len(tokenizer.encode(r["text"], add_special_tokens=False).ids) for r in rows)
    assert (stats["min"], stats["max"]) == (lengths[0], lengths[-1])
    assert client.get(f"/api/v1/files/{file_id}/rows").json()["rows"] == rows
    page = client.get(
        f"/datasets/{file_id}/rows", params={"split": "train"}, headers={"HX-Request": "1"}
    ).text
    assert "<th>text</th><th>label</th>" in page and "<td>a good film</td><td>positive</td>" in page
    assert client.get(f"/api/v1/files/{file_id}/cleaning").status_code == 200
