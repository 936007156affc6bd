"""The cleaning report and cleaned dataset versions: findings, filters, lineage, errors."""

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from app.core.db import read_session
from app.core.tables import DatasetFile
from app.datasets.cleaning import mojibake_in, normalise
from tests.factories import jsonl

ALL_FILTERS = ["near_duplicates", "short_outputs", "mojibake", "repeated_outputs", "too_long"]

GOOD = [
    {"instruction": f"Question number {i}?", "input": "", "output": f"The answer is {i}."} for i in range(20)
] + [{"instruction": "Where to go?", "input": "", "output": "Visit São Paulo and Zürich — “really”."}]
NEAR = [
    {"instruction": "question NUMBER 1", "input": "", "output": "the answer is 1"},
    {"instruction": "Question   number 2?!", "input": "", "output": "The answer, is 2."},
]
SHORT = [
    {"instruction": "Say yes", "input": "", "output": "Yes"},
    {"instruction": "Say no", "input": "", "output": " No. "},
]
MOJIBAKE = [
    {"instruction": "Describe the café", "input": "", "output": "The cafÃ© is <b>nice</b>."},
    {"instruction": "Quote him", "input": "", "output": "He said itâ€™s fine."},
    {"instruction": "Ring the bell", "input": "\u0007", "output": "A bell rang just now."},
    {"instruction": "Broken bytes", "input": "", "output": "Lost \ufffd bytes here."},
]
REPEATED = [
    {"instruction": f"Forbidden thing {i}", "input": "", "output": f"I cannot help with that request{p}"}
    for i, p in enumerate(".!.")
]
LONG = [{"instruction": "Repeat", "input": "", "output": "word " * 300}]
PROBLEMS = {
    "near_duplicates": NEAR,
    "short_outputs": SHORT,
    "mojibake": MOJIBAKE,
    "repeated_outputs": REPEATED,
    "too_long": LONG,
}


def upload(client: TestClient, rows: list[dict[str, Any]], split: str = "0.1") -> dict[str, Any]:
    files = {"file": ("mixed.jsonl", jsonl(rows))}
    response = client.post("/api/v1/files", files=files, data={"validation_split": split})
    assert response.status_code == 200, response.text
    return dict(response.json())


def all_rows(client: TestClient, file_id: str) -> dict[str, list[dict[str, Any]]]:
    result: dict[str, list[dict[str, Any]]] = {}
    for split in ("train", "validation"):
        pages = client.get(f"/api/v1/files/{file_id}/rows", params={"split": split}).json()["pages"]
        result[split] = [
            row
            for page in range(1, pages + 1)
            for row in client.get(
                f"/api/v1/files/{file_id}/rows", params={"split": split, "page": page}
            ).json()["rows"]
        ]
    return result


def stored_ids(data_dir: Path) -> tuple[set[str], set[str]]:
    with read_session() as session:
        rows = {d.id for d in session.exec(select(DatasetFile)).all()}
    folder = data_dir / "artifacts" / "files"
    return rows, {p.name for p in folder.iterdir()}


@pytest.fixture
def mixed(client: TestClient, tiny_model: str) -> dict[str, Any]:
    return upload(client, GOOD + NEAR + SHORT + MOJIBAKE + REPEATED + LONG)


def test_normalise_and_mojibake_detection() -> None:
    assert normalise("  Ｈｅｌｌｏ,\tWORLD!! ") == normalise("hello world") == "hello world"
    assert "meant 'é'" in str(mojibake_in("cafÃ©"))
    assert "meant 'ö'" in str(mojibake_in("schÃ¶n"))
    assert "meant '’'" in str(mojibake_in("itâ€™s"))
    assert mojibake_in("x\x85y") == "control character U+0085"
    assert mojibake_in("x\ufffdy") == "replacement character U+FFFD"
    for fine in ("São Paulo", "Zürich", "naïve — “quoted”", "tab\tnewline\ncr\r", "ÃO PAULO", "Âge"):
        assert mojibake_in(fine) is None, fine


def test_report_counts_each_problem_with_examples_where_they_are(
    client: TestClient, mixed: dict[str, Any]
) -> None:
    params = {"model": "tiny-llama", "max_seq_length": 128}
    report = client.get(f"/api/v1/files/{mixed['id']}/cleaning", params=params).json()
    assert report["rows"] == 33 and report["model"] == "tiny-llama"
    assert report["options"] == {
        "max_seq_length": 128,
        "min_output_words": 2,
        "min_output_chars": 3,
        "repeat_threshold": 3,
    }
    findings = {f["name"]: f for f in report["findings"]}
    assert list(findings) == ["exact_duplicates", *ALL_FILTERS]
    assert findings["exact_duplicates"]["count"] == 0 and not findings["exact_duplicates"]["filter"]
    counts = {name: findings[name]["count"] for name in ALL_FILTERS}
    assert counts == {
        "near_duplicates": 2,
        "short_outputs": 2,
        "mojibake": 4,
        "repeated_outputs": 3,
        "too_long": 1,
    }
    stored = all_rows(client, mixed["id"])
    for name, problem_rows in PROBLEMS.items():
        examples = findings[name]["examples"]
        assert len(examples) == min(3, len(problem_rows)), name
        for example in examples:
            assert stored[example["split"]][example["index"]] == example["row"], name
            if name != "near_duplicates":  # the later row of a near pair is flagged: either one
                assert example["row"] in problem_rows, name
    assert findings["too_long"]["examples"][0]["note"].endswith("tokens")
    assert "answers 3 different instructions" in findings["repeated_outputs"]["examples"][0]["note"]
    assert any("meant 'é'" in e["note"] for e in findings["mojibake"]["examples"])


def test_thresholds_are_parameters(client: TestClient, mixed: dict[str, Any]) -> None:
    params = {"min_output_words": 5, "repeat_threshold": 4, "max_seq_length": 32768}
    report = client.get(f"/api/v1/files/{mixed['id']}/cleaning", params=params).json()
    findings = {f["name"]: f["count"] for f in report["findings"]}
    # 4 words or fewer: the 20 "The answer is 7.", both near pairs, both short, 3 of the mojibake rows
    assert findings["short_outputs"] == 20 + 2 + 2 + 3
    assert findings["repeated_outputs"] == 0 and findings["too_long"] == 0
    bad = client.get(f"/api/v1/files/{mixed['id']}/cleaning", params={"repeat_threshold": 1})
    assert bad.status_code == 422 and "repeat_threshold" in bad.json()["error"]["message"]
    unknown = client.get(f"/api/v1/files/{mixed['id']}/cleaning", params={"model": "nope"})
    assert unknown.status_code == 404


def expected_after_cleaning(stored: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Problem rows gone; of each near-duplicate pair the one stored later (train, then validation) goes."""
    order = stored["train"] + stored["validation"]
    gone = [row for name, rows in PROBLEMS.items() if name != "near_duplicates" for row in rows]
    for near, original in zip(NEAR, (GOOD[1], GOOD[2]), strict=True):
        gone.append(max(near, original, key=order.index))
    return {split: [r for r in rows if r not in gone] for split, rows in stored.items()}


def test_cleaning_makes_a_new_version_and_keeps_the_parent(
    client: TestClient, mixed: dict[str, Any], configured: Path
) -> None:
    before = all_rows(client, mixed["id"])
    folder = configured / "artifacts" / "files"
    parent_files = {p.name: p.read_bytes() for p in (folder / mixed["id"]).iterdir()}
    body = {"filters": ALL_FILTERS, "too_long": "drop", "model": "tiny-llama", "max_seq_length": 128}
    response = client.post(f"/api/v1/files/{mixed['id']}/clean", json=body)
    assert response.status_code == 200, response.text
    version = response.json()
    assert version["id"].startswith("file-") and version["id"] != mixed["id"]
    assert (version["parent_id"], version["version"], version["filename"]) == (
        mixed["id"],
        2,
        "mixed.jsonl (clean v2)",
    )
    assert (version["split_seed"], version["validation_split"], version["rows"]) == (42, 0.1, 21)
    assert version["cleaning"] == {
        "source_id": mixed["id"],
        "filters": ALL_FILTERS,
        "too_long": "drop",
        "removed": {
            "near_duplicates": 2,
            "short_outputs": 2,
            "mojibake": 4,
            "repeated_outputs": 3,
            "too_long": 1,
        },
        "rows_before": 33,
        "rows_after": 21,
        "model": "tiny-llama",
        "options": {
            "max_seq_length": 128,
            "min_output_words": 2,
            "min_output_chars": 3,
            "repeat_threshold": 3,
        },
    }
    cleaned = all_rows(client, version["id"])
    assert cleaned == expected_after_cleaning(before)
    assert (version["train_rows"], version["validation_rows"]) == (
        len(cleaned["train"]),
        len(cleaned["validation"]),
    )
    assert all_rows(client, mixed["id"]) == before
    assert {p.name: p.read_bytes() for p in (folder / mixed["id"]).iterdir()} == parent_files
    assert (folder / version["id"] / "original").read_bytes() == parent_files["original"]
    assert client.get(f"/api/v1/files/{mixed['id']}").json() == mixed

    job = client.post(
        "/api/v1/fine_tuning/jobs", json={"model": "tiny-llama", "training_file": version["id"]}
    )
    assert job.status_code == 200, job.text
    assert job.json()["training_file"] == version["id"]

    again = client.post(f"/api/v1/files/{version['id']}/clean", json={"filters": ["near_duplicates"]}).json()
    assert (again["version"], again["parent_id"], again["filename"]) == (
        3,
        version["id"],
        "mixed.jsonl (clean v3)",
    )
    assert again["cleaning"]["removed"] == {"near_duplicates": 0} and again["rows"] == 21


def test_truncate_keeps_long_rows_and_records_them(client: TestClient, mixed: dict[str, Any]) -> None:
    body = {"filters": ["too_long", "short_outputs"], "too_long": "truncate", "max_seq_length": 128}
    version = client.post(f"/api/v1/files/{mixed['id']}/clean", json=body).json()
    assert version["rows"] == 31 and version["cleaning"]["removed"] == {"short_outputs": 2, "too_long": 0}
    assert version["cleaning"]["too_long"] == "truncate" and version["cleaning"]["truncated"] == 1
    assert version["cleaning"]["filters"] == ["short_outputs", "too_long"]


def test_chat_rows(client: TestClient, tiny_model: str) -> None:
    def chat(user: str, answer: str) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}

    rows = [chat(f"Tell me fact {i}", f"Fact {i} is interesting.") for i in range(10)]
    rows += [chat("TELL me fact 3!", "fact 3 is interesting"), chat("Hi", "Hello"), chat("Hey", "Hello")]
    rows += [chat(f"Rude question {i}", "As an AI I cannot answer.") for i in range(3)]
    file = upload(client, rows, split="0")
    report = client.get(f"/api/v1/files/{file['id']}/cleaning").json()
    counts = {f["name"]: f["count"] for f in report["findings"]}
    assert counts == {
        "exact_duplicates": 0,
        "near_duplicates": 1,
        "short_outputs": 2,
        "mojibake": 0,
        "repeated_outputs": 3,
        "too_long": 0,
    }
    near = next(f for f in report["findings"] if f["name"] == "near_duplicates")["examples"][0]
    assert (near["split"], near["index"], near["note"]) == ("train", 10, "same as train[3]")
    body = {"filters": ["near_duplicates", "short_outputs", "repeated_outputs"]}
    version = client.post(f"/api/v1/files/{file['id']}/clean", json=body).json()
    assert version["format"] == "chat" and version["rows"] == 10 and version["train_rows"] == 10


def test_bad_requests_are_422_and_store_nothing(
    client: TestClient, tiny_model: str, configured: Path
) -> None:
    file = upload(client, [{"instruction": f"Q{i}", "output": "ok"} for i in range(5)])
    before = stored_ids(configured)
    cases = [
        (
            {"filters": ["near_duplicates", "typos"]},
            "unknown filter(s) 'typos'; valid filters: " + ", ".join(ALL_FILTERS),
        ),
        ({"filters": []}, "choose at least one filter"),
        ({"filters": ["short_outputs"]}, "would leave no training rows"),
        ({"filters": ["too_long"], "too_long": "shorten"}, "'truncate' or 'drop'"),
        ({"filters": ["short_outputs"], "min_output_words": -1}, "greater than or equal to 0"),
    ]
    for body, message in cases:
        response = client.post(f"/api/v1/files/{file['id']}/clean", json=body)
        assert response.status_code == 422, body
        assert message in response.json()["error"]["message"], (body, response.json())
    missing = client.post("/api/v1/files/file-nope/clean", json={"filters": ["mojibake"]})
    assert missing.status_code == 404
    assert stored_ids(configured) == before


def test_dropping_long_rows_needs_a_base_model(client: TestClient, configured: Path) -> None:
    file = upload(client, GOOD)
    response = client.post(
        f"/api/v1/files/{file['id']}/clean", json={"filters": ["too_long"], "too_long": "drop"}
    )
    assert response.status_code == 422 and "needs a base model" in response.json()["error"]["message"]
    report = client.get(f"/api/v1/files/{file['id']}/cleaning").json()
    too_long = next(f for f in report["findings"] if f["name"] == "too_long")
    assert report["model"] is None and too_long["skipped"] and too_long["count"] == 0
    assert stored_ids(configured) == ({file["id"]}, {file["id"]})


def test_a_failed_commit_leaves_no_files(
    client: TestClient, mixed: dict[str, Any], configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.datasets import api

    def fail(session: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(api, "commit", fail)
    with pytest.raises(RuntimeError):
        client.post(f"/api/v1/files/{mixed['id']}/clean", json={"filters": ["mojibake"]})
    assert stored_ids(configured) == ({mixed["id"]}, {mixed["id"]})
