"""Parse and validate uploaded datasets, reporting every problem with its line.

Three row formats: the seed's instruction rows ``{"instruction", "input", "output"}``, chat
rows ``{"messages": [{"role", "content"}, ...]}`` and classification rows ``{"text", "label"}``;
as JSON (an array), JSONL or CSV (chat rows: JSON only).
"""

import csv
import io
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.core.errors import Unprocessable

MAX_REPORTED_PROBLEMS = 50
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an uploaded file; line is 1-based (0: the file as a whole)."""

    line: int
    message: str
    field: str | None = None

    def describe(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message}"


class DatasetInvalid(Unprocessable):
    """The upload was refused; ``problems`` says what to fix."""

    param = "file"
    code = "invalid_file"

    def __init__(self, problems: list[Problem], total: int | None = None) -> None:
        self.problems = problems[:MAX_REPORTED_PROBLEMS]
        self.total = total if total is not None else len(problems)
        more = f" (and {self.total - len(self.problems)} more)" if self.total > len(self.problems) else ""
        summary = "; ".join(p.describe() for p in self.problems[:3])
        super().__init__(f"{self.total} problem(s) in the dataset{more}: {summary}")

    def details(self) -> dict[str, Any]:
        problems = [{"line": p.line, "field": p.field, "message": p.message} for p in self.problems]
        return {"details": problems, "total": self.total}


@dataclass
class ParsedDataset:
    """Valid rows, normalised, with the line each came from."""

    format: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)


def parse_dataset(data: bytes, filename: str) -> ParsedDataset:
    """Decode, parse and validate ``data``; raise DatasetInvalid listing every problem."""
    text = _decode(data)
    if not text.strip():
        raise DatasetInvalid([Problem(0, "the file is empty: no rows found")])
    kind = _kind(text, filename)
    records = {"csv": _csv_records, "json": _json_records, "jsonl": _jsonl_records}[kind](text)
    return _validate(records)


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetInvalid(
            [Problem(line, f"not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8")]
        ) from None
    return text.removeprefix("\ufeff")


def _kind(text: str, filename: str) -> str:
    lower = filename.lower()
    for suffix in ("csv", "jsonl", "json"):
        if lower.endswith("." + suffix):
            return "jsonl" if suffix == "json" and not text.lstrip().startswith("[") else suffix
    return "json" if text.lstrip().startswith("[") else "jsonl"


Record = tuple[int, Any]  # (line, parsed value or a Problem)


def _json_problem(line: int, exc: ValueError | RecursionError) -> Problem:
    """What is wrong with a JSON value json.loads refused, at ``line``."""
    if isinstance(exc, json.JSONDecodeError):
        return Problem(line, f"not valid JSON ({exc.msg} at column {exc.colno})")
    if isinstance(exc, RecursionError):
        return Problem(
            line, "JSON nested too deeply; rows are objects of strings and lists a few levels deep"
        )
    if "integer string conversion" in str(exc):  # more digits than Python converts to an int
        return Problem(
            line, f"a number has more than {sys.get_int_max_str_digits()} digits; write it as a string"
        )
    return Problem(line, f"not usable JSON ({exc})")


def _jsonl_records(text: str) -> list[Record]:
    records: list[Record] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except (ValueError, RecursionError) as exc:
            records.append((number, _json_problem(number, exc)))
    return records


def _json_records(text: str) -> list[Record]:
    """Elements of a top-level JSON array, each with the line it starts on."""
    decoder = json.JSONDecoder()
    line_at = _line_counter(text)
    pos = text.index("[") + 1
    records: list[Record] = []
    while True:
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == "]":
            if _skip_space(text, pos + 1) != len(text):
                raise DatasetInvalid([Problem(line_at(pos + 1), "unexpected data after the JSON array")])
            return records
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DatasetInvalid([_json_problem(exc.lineno, exc)]) from None
        except (ValueError, RecursionError) as exc:
            raise DatasetInvalid([_json_problem(line_at(pos), exc)]) from None
        records.append((line_at(pos), value))
        pos = _skip_space(text, end)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            raise DatasetInvalid([Problem(line_at(pos), "not valid JSON (expected ',' or ']')")])


_SPACE = re.compile(r"[ \t\r\n]*")


def _skip_space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    return match.end() if match else pos


def _line_counter(text: str) -> Callable[[int], int]:
    """``line_at(pos)``: the 1-based line of ``pos``, for positions that only move forward. Each
    call counts the newlines since the previous one, so a whole file costs one pass (counting
    from the top for every row made a 40k-row array take half a minute)."""
    last_pos, last_line = 0, 1

    def line_at(pos: int) -> int:
        nonlocal last_pos, last_line
        if pos < last_pos:  # not expected; stay correct anyway
            last_pos, last_line = 0, 1
        last_line += text.count("\n", last_pos, pos)
        last_pos = pos
        return last_line

    return line_at


def _csv_records(text: str) -> list[Record]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        raise DatasetInvalid([Problem(1, f"broken CSV header ({exc})")]) from None
    classification = bool({"text", "label"} & set(header)) and not {"instruction", "output"} & set(header)
    columns = ("text", "label") if classification else ("instruction", "output")
    missing = [name for name in columns if name not in header]
    if missing:
        message = (
            "CSV header must name columns instruction, input (optional), output "
            f"(or text, label for classification); missing {missing}"
        )
        raise DatasetInvalid([Problem(1, message)])
    records: list[Record] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return records
        except csv.Error as exc:
            # DictReader counts lines only after a good row: the broken one starts on the next line.
            start, found = reader.line_num + 1, reader.reader.line_num
            runs_on = f"; it runs on to line {found}, look for an unclosed quote" if found > start else ""
            raise DatasetInvalid([Problem(start, f"broken CSV ({exc}{runs_on})")]) from None
        if None in row:
            records.append((reader.line_num, Problem(reader.line_num, "more cells than header columns")))
            continue
        records.append(
            (reader.line_num, {key: ("" if value is None else value) for key, value in row.items()})
        )


def _validate(records: list[Record]) -> ParsedDataset:
    problems: list[Problem] = []
    result = ParsedDataset(format="")
    for line, value in records:
        if isinstance(value, Problem):
            problems.append(value)
            continue
        if not isinstance(value, dict):
            problems.append(Problem(line, f"each row must be a JSON object, got {_type_name(value)}"))
            continue
        row_format = _row_format(value) or result.format or "instruction"
        result.format = result.format or row_format
        if row_format != result.format:
            problems.append(
                Problem(line, f"row is in {row_format} format but earlier rows are {result.format}")
            )
            continue
        row, row_problems = CHECKS[row_format](line, value)
        if not row_problems and (where := _surrogate_field(row)):
            message = "holds a lone surrogate escape (\\ud800-\\udfff), which is not text; remove it"
            row_problems = [Problem(line, message, where)]
        problems.extend(row_problems)
        if not row_problems:
            result.rows.append(row)
            result.lines.append(line)
    if problems:
        raise DatasetInvalid(problems)
    if not result.rows:
        raise DatasetInvalid([Problem(0, "the file is empty: no rows found")])
    return result


_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate_field(value: Any, where: str = "") -> str | None:
    """The field of a row whose text has an unpaired surrogate (JSON can spell one, UTF-8 can't)."""
    if isinstance(value, str):
        return (where or "row") if _SURROGATE.search(value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        path = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else str(key)
        if found := _surrogate_field(item, path):
            return found
    return None


def _row_format(value: dict[str, Any]) -> str | None:
    """The format a row's keys point to; None when it names none of them."""
    if "messages" in value:
        return "chat"
    if "instruction" in value or "output" in value:
        return "instruction"
    if "text" in value or "label" in value:
        return "classification"
    return None


def _type_name(value: Any) -> str:
    names = {
        str: "a string",
        bool: "true/false",
        int: "a number",
        float: "a number",
        list: "a list",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _check_instruction(line: int, value: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    problems: list[Problem] = []
    row: dict[str, Any] = {}
    for name, required in (
        ("instruction", True),
        ("input", False),
        ("output", True),
        ("system", False),
    ):
        item = value.get(name)
        if item is None and not required:
            row[name] = ""
        elif item is None:
            problems.append(Problem(line, "missing (every row needs instruction and output)", name))
        elif not isinstance(item, str):
            problems.append(Problem(line, f"must be a string, got {_type_name(item)}", name))
        elif required and not item.strip():
            problems.append(Problem(line, "is empty", name))
        else:
            row[name] = item
    if not row.get("system"):
        row.pop("system", None)
    return row, problems


def _check_chat(line: int, value: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    messages = value.get("messages")
    if not isinstance(messages, list) or not messages:
        return {}, [Problem(line, "must be a non-empty list of {role, content}", "messages")]
    problems: list[Problem] = []
    clean: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            problems.append(Problem(line, f"must be an object, got {_type_name(message)}", where))
            continue
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            problems.append(
                Problem(line, f"role must be one of {', '.join(ROLES)}, got {role!r}", where + ".role")
            )
        if not isinstance(content, str):
            problems.append(Problem(line, f"must be a string, got {_type_name(content)}", where + ".content"))
        elif not content.strip():
            problems.append(Problem(line, "is empty", where + ".content"))
        if not problems:
            clean.append({"role": str(role), "content": str(content)})
    if not problems and clean[-1]["role"] != "assistant":
        problems.append(Problem(line, "the last message must be the assistant's answer", "messages"))
    if not problems and not any(m["role"] == "user" for m in clean):
        problems.append(Problem(line, "needs at least one user message", "messages"))
    return {"messages": clean}, problems


def _check_classification(line: int, value: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """A text and its label; labels are stored as strings so that CSV and JSON files agree."""
    problems: list[Problem] = []
    text, label = value.get("text"), value.get("label")
    if text is None:
        problems.append(Problem(line, "missing (every row needs text and label)", "text"))
    elif not isinstance(text, str):
        problems.append(Problem(line, f"must be a string, got {_type_name(text)}", "text"))
    elif not text.strip():
        problems.append(Problem(line, "is empty", "text"))
    if label is None:
        problems.append(Problem(line, "missing (every row needs text and label)", "label"))
    elif isinstance(label, bool) or not isinstance(label, str | int):
        message = f"must be a string or a whole number, got {_type_name(label)}"
        problems.append(Problem(line, message, "label"))
    elif not str(label).strip():
        problems.append(Problem(line, "is empty", "label"))
    return {"text": text, "label": str(label).strip()}, problems


CHECKS = {"instruction": _check_instruction, "chat": _check_chat, "classification": _check_classification}
