"""Broken uploads through the dashboard's upload form: a 422 page naming the line, and nothing
stored. (The same files over the REST API: tests/datasets/test_api.py; parsing: test_parsing.py.)"""

from pathlib import Path

from fastapi.testclient import TestClient

from tests.security.conftest import assert_nothing_stored

BROKEN = [
    (
        "invalid-utf8",
        "d.jsonl",
        b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff", "output": "b"}\n',
        2,
    ),
    ("broken-json", "d.jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": "a", "output"\n', 2),
    ("broken-json-array", "d.json", b'[{"instruction": "a", "output": "b"},\n{"instruction" "a"}]', 2),
    ("broken-csv", "d.csv", b'instruction,input,output\na,,b\n"never closed,,c\n', 3),
    ("csv-missing-column", "d.csv", b"instruction,input\na,b\n", 1),
    ("missing-field", "d.jsonl", b'{"instruction": "a", "output": "b"}\n{"output": "b"}\n', 2),
    ("empty-file", "d.jsonl", b"", 0),
]


def test_the_upload_form_refuses_broken_files_with_the_line_and_stores_nothing(
    client: TestClient, configured: Path
) -> None:
    for case, name, data, line in BROKEN:
        page = client.post(
            "/datasets",
            files={"file": (name, data)},
            data={"validation_split": "0.1"},
            headers={"Accept": "text/html"},
        )
        assert page.status_code == 422 and page.headers["content-type"].startswith("text/html"), case
        assert (f"line {line}" if line else "the file is empty") in page.text, (case, page.text)
        assert_nothing_stored(configured)
