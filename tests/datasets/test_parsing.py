"""Every kind of bad dataset is refused with the line (and field) of each problem."""

import json

import pytest

from app.datasets.parsing import DatasetInvalid, parse_dataset


def problems(data: bytes, filename: str = "d.jsonl") -> list[tuple[int, str | None, str]]:
    with pytest.raises(DatasetInvalid) as info:
        parse_dataset(data, filename)
    return [(p.line, p.field, p.message) for p in info.value.problems]


def jsonl(*rows: object) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


GOOD = {"instruction": "Say hi", "input": "", "output": "hi"}


def test_instruction_jsonl_json_and_csv_parse_to_the_same_rows() -> None:
    rows = [GOOD, {"instruction": "Add", "input": "1+1", "output": "2"}]
    as_jsonl = parse_dataset(jsonl(*rows), "a.jsonl")
    as_json = parse_dataset(json.dumps(rows, indent=2).encode(), "a.json")
    as_csv = parse_dataset(b"instruction,input,output\nSay hi,,hi\nAdd,1+1,2\n", "a.csv")
    assert as_jsonl.rows == as_json.rows == as_csv.rows
    assert as_jsonl.format == "instruction"


def test_chat_rows() -> None:
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    parsed = parse_dataset(jsonl(row), "c.jsonl")
    assert parsed.format == "chat" and parsed.rows == [row]


def test_invalid_utf8_names_the_line() -> None:
    data = jsonl(GOOD) + b'{"instruction": "caf\xe9", "output": "x"}\n'
    [(line, _, message)] = problems(data)
    assert line == 2 and "UTF-8" in message


def test_broken_json_line() -> None:
    data = jsonl(GOOD) + b'{"instruction": "x", "output": \n' + jsonl(GOOD)
    assert problems(data)[0][:1] == (2,) and "not valid JSON" in problems(data)[0][2]


def test_broken_json_array_names_the_line() -> None:
    data = b'[\n {"instruction": "a", "output": "b"},\n {"instruction": "a" "output": "b"}\n]'
    [(line, _, message)] = problems(data, "d.json")
    assert line == 3 and "not valid JSON" in message


def test_missing_and_empty_fields_each_reported() -> None:
    data = jsonl(GOOD, {"instruction": "x"}, {"instruction": " ", "output": "y"}, {"output": "z"})
    assert [(line, field) for line, field, _ in problems(data)] == [
        (2, "output"),
        (3, "instruction"),
        (4, "instruction"),
    ]


def test_wrong_types() -> None:
    data = jsonl(
        {"instruction": "x", "output": 5},
        ["not", "an", "object"],
        {"instruction": "x", "input": 3, "output": "y"},
    )
    found = problems(data)
    assert found[0] == (1, "output", "must be a string, got a number")
    assert found[1][0] == 2 and "JSON object" in found[1][2]
    assert found[2][:2] == (3, "input")


def test_empty_file_and_blank_lines_only() -> None:
    assert problems(b"")[0] == (0, None, "the file is empty: no rows found")
    assert problems(b"\n  \n")[0][2].startswith("the file is empty")
    assert problems(b"[]", "d.json")[0][2].startswith("the file is empty")


def test_csv_without_required_columns_and_ragged_rows() -> None:
    assert "missing ['output']" in problems(b"instruction,answer\na,b\n", "d.csv")[0][2]
    found = problems(b"instruction,input,output\na,,b\nc,d,e,f\n", "d.csv")
    assert found == [(3, None, "more cells than header columns")]


def test_chat_problems() -> None:
    data = jsonl(
        {"messages": []},
        {"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]},
        {"messages": [{"role": "user", "content": "x"}]},
    )
    found = problems(data)
    assert [f[:2] for f in found] == [(1, "messages"), (2, "messages[0].role"), (3, "messages")]
    assert "last message must be the assistant" in found[2][2]


def test_many_problems_are_capped_but_counted() -> None:
    data = jsonl(*[{"instruction": "x"}] * 80)
    with pytest.raises(DatasetInvalid) as info:
        parse_dataset(data, "d.jsonl")
    assert info.value.total == 80 and len(info.value.problems) == 50 and "30 more" in str(info.value)
