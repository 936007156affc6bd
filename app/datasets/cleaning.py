"""The cleaning report: rows likely to hurt training, found in plain Python.

Each check returns the rows it flags with a note saying why; ``build_report`` keeps every
check's count, three examples and the flagged rows, and ``select_rows`` applies the filters a
user picked. Token counting is passed in as a function, so nothing here loads a tokenizer.
"""

import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.rows import to_messages
from app.datasets.parsing import DatasetInvalid, Problem

FILTERS = ("near_duplicates", "short_outputs", "mojibake", "repeated_outputs", "too_long")
TOO_LONG_ACTIONS = ("truncate", "drop")
EXAMPLES = 3
# Row-level filters are applied in this order and a removed row is counted under the first that
# matches; near duplicates come last, among the rows still kept, so each group keeps one row.
_APPLY_ORDER = ("repeated_outputs", "mojibake", "short_outputs", "too_long")

TooLongAction = Literal["truncate", "drop"]
CountTokens = Callable[[dict[str, Any]], int]


class CleaningOptions(BaseModel):
    """The checks' thresholds; the defaults are what the report uses unless told otherwise."""

    model_config = ConfigDict(frozen=True)

    max_seq_length: int = Field(
        1024,
        ge=16,
        le=32768,
        description="Rows with more tokens than this after the chat template are too long",
    )
    min_output_words: int = Field(2, ge=0, le=1000, description="An output with fewer words is short")
    min_output_chars: int = Field(
        3, ge=0, le=100_000, description="An output with fewer characters (after strip) is short"
    )
    repeat_threshold: int = Field(
        3, ge=2, le=1_000_000, description="An output given for this many distinct instructions is repeated"
    )


@dataclass(frozen=True)
class RowRef:
    """A stored row and where it is: its split and its 0-based index in that split."""

    split: str
    index: int
    row: dict[str, Any]

    @property
    def key(self) -> tuple[str, int]:
        return (self.split, self.index)

    @property
    def where(self) -> str:
        return f"{self.split}[{self.index}]"


Flag = tuple[RowRef, str]  # a flagged row and why it was flagged


@dataclass(frozen=True)
class Example:
    split: str
    index: int
    row: dict[str, Any]
    note: str


@dataclass
class Finding:
    """One check's result: how many rows it flags, a few examples, and (internally) all of them."""

    name: str
    title: str
    description: str
    filter: bool
    count: int = 0
    examples: list[Example] = field(default_factory=list)
    skipped: str | None = None
    flagged: set[tuple[str, int]] = field(default_factory=set)


@dataclass
class CleaningReport:
    """Every finding for one dataset, with the thresholds and tokenizer model used."""

    file_id: str
    rows: int
    model: str | None
    options: CleaningOptions
    findings: list[Finding]
    filters: tuple[str, ...] = FILTERS

    def finding(self, name: str) -> Finding:
        return next(f for f in self.findings if f.name == name)


_FINDINGS: dict[str, tuple[str, str]] = {
    "exact_duplicates": (
        "Exact duplicates",
        "Rows identical to an earlier row. Uploads drop these, so this stays 0; "
        "the near-duplicate filter would remove any that remain.",
    ),
    "near_duplicates": (
        "Near duplicates",
        "Rows equal to an earlier row once text is normalised (Unicode NFKC, case, whitespace, "
        "punctuation). The filter keeps the first of each group.",
    ),
    "short_outputs": ("Empty or very short outputs", "Answers too short to teach the model anything."),
    "mojibake": (
        "Broken characters (mojibake)",
        "Replacement characters (U+FFFD), control characters, or UTF-8 read as Latin-1 (such as 'Ã©').",
    ),
    "repeated_outputs": (
        "One output for many instructions",
        "The same answer given to many different instructions (canned replies); the filter drops them all.",
    ),
    "too_long": (
        "Longer than max_seq_length",
        "'truncate' keeps these rows and training cuts them at max_seq_length; 'drop' removes them.",
    ),
}


def normalise(text: str) -> str:
    """Text as the near-duplicate check compares it: NFKC, casefolded, no punctuation, single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return " ".join(text.split())


def _output(row: dict[str, Any]) -> str:
    return to_messages(row)[-1]["content"]  # parsing makes the last message the assistant's


def _prompt_key(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(normalise(m["content"]) for m in to_messages(row)[:-1] if m["role"] != "system")


def _near_key(row: dict[str, Any]) -> tuple[str, ...]:
    if "messages" in row:
        return tuple(normalise(m["content"]) for m in row["messages"])
    return tuple(normalise(row.get(name, "")) for name in ("instruction", "input", "output"))


def _texts(row: dict[str, Any]) -> list[str]:
    if "messages" in row:
        return [m["content"] for m in row["messages"]]
    return [value for value in row.values() if isinstance(value, str)]


def _repeats(rows: list[RowRef], key: Callable[[dict[str, Any]], Hashable], same: str) -> list[Flag]:
    first: dict[Hashable, RowRef] = {}
    flags: list[Flag] = []
    for ref in rows:
        earlier = first.setdefault(key(ref.row), ref)
        if earlier is not ref:
            flags.append((ref, f"{same} {earlier.where}"))
    return flags


def exact_duplicates(rows: list[RowRef]) -> list[Flag]:
    """Every row identical to an earlier one."""
    return _repeats(rows, lambda row: json.dumps(row, sort_keys=True, ensure_ascii=False), "identical to")


def near_duplicates(rows: list[RowRef]) -> list[Flag]:
    """Every row whose normalised text equals an earlier row's (the first of each group is not flagged)."""
    return _repeats(rows, _near_key, "same as")


def short_outputs(rows: list[RowRef], options: CleaningOptions) -> list[Flag]:
    """Rows whose output (last assistant message) has too few words or characters."""
    flags: list[Flag] = []
    for ref in rows:
        text = _output(ref.row).strip()
        words = len(text.split())
        if words < options.min_output_words or len(text) < options.min_output_chars:
            flags.append((ref, f"output has {words} word(s), {len(text)} character(s)"))
    return flags


def _utf8_byte_table() -> dict[str, int]:
    """Characters that bytes 0x80-0xFF turn into when UTF-8 is read as Latin-1 or Windows-1252."""
    table: dict[str, int] = {}
    for byte in range(0x80, 0x100):
        for encoding in ("latin-1", "cp1252"):
            try:
                table.setdefault(bytes([byte]).decode(encoding), byte)
            except UnicodeDecodeError:
                continue
    return table


_BYTES = _utf8_byte_table()
_CONT = "".join(re.escape(ch) for ch, byte in _BYTES.items() if byte < 0xC0)
_MISREAD = re.compile(f"[\u00c2-\u00df][{_CONT}]|[\u00e0-\u00ef][{_CONT}]{{2}}|[\u00f0-\u00f4][{_CONT}]{{3}}")
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")


def mojibake_in(text: str) -> str | None:
    """Why ``text`` looks garbled, or None."""
    bad = _BAD_CHAR.search(text)
    if bad:
        char = bad.group()
        kind = "replacement character" if char == "\ufffd" else "control character"
        return f"{kind} U+{ord(char):04X}"
    for match in _MISREAD.finditer(text):
        try:
            meant = bytes(_BYTES[ch] for ch in match.group()).decode("utf-8")
        except UnicodeDecodeError:
            continue
        return f"{match.group()!r} is UTF-8 read as Latin-1 (meant {meant!r})"
    return None


def mojibake(rows: list[RowRef]) -> list[Flag]:
    """Rows with a replacement or control character, or UTF-8 misread as Latin-1, in any field."""
    flags: list[Flag] = []
    for ref in rows:
        note = next((n for n in map(mojibake_in, _texts(ref.row)) if n), None)
        if note:
            flags.append((ref, note))
    return flags


def repeated_outputs(rows: list[RowRef], options: CleaningOptions) -> list[Flag]:
    """Rows whose normalised output is shared by at least ``repeat_threshold`` distinct instructions."""
    groups: dict[str, list[RowRef]] = defaultdict(list)
    for ref in rows:
        groups[normalise(_output(ref.row))].append(ref)
    flagged: dict[tuple[str, int], str] = {}
    for refs in groups.values():
        prompts = len({_prompt_key(ref.row) for ref in refs})
        if prompts >= options.repeat_threshold:
            flagged.update((ref.key, f"this output answers {prompts} different instructions") for ref in refs)
    return [(ref, flagged[ref.key]) for ref in rows if ref.key in flagged]


def too_long(rows: list[RowRef], options: CleaningOptions, count_tokens: CountTokens) -> list[Flag]:
    """Rows with more than ``max_seq_length`` tokens."""
    lengths = ((ref, count_tokens(ref.row)) for ref in rows)
    return [(ref, f"{n} tokens") for ref, n in lengths if n > options.max_seq_length]


def build_report(
    *,
    file_id: str,
    rows: list[RowRef],
    options: CleaningOptions,
    count_tokens: CountTokens | None = None,
    model: str | None = None,
) -> CleaningReport:
    """Run every check over ``rows``; without ``count_tokens`` the length check is skipped."""
    flags = {
        "exact_duplicates": exact_duplicates(rows),
        "near_duplicates": near_duplicates(rows),
        "short_outputs": short_outputs(rows, options),
        "mojibake": mojibake(rows),
        "repeated_outputs": repeated_outputs(rows, options),
        "too_long": too_long(rows, options, count_tokens) if count_tokens else [],
    }
    findings = []
    for name, (title, description) in _FINDINGS.items():
        finding = Finding(name=name, title=title, description=description, filter=name in FILTERS)
        finding.count = len(flags[name])
        finding.flagged = {ref.key for ref, _ in flags[name]}
        finding.examples = [Example(r.split, r.index, r.row, note) for r, note in flags[name][:EXAMPLES]]
        findings.append(finding)
    report = CleaningReport(file_id=file_id, rows=len(rows), model=model, options=options, findings=findings)
    if count_tokens is None:
        report.finding("too_long").skipped = "no base model is registered to count tokens with"
    return report


def check_filters(filters: list[str], too_long_action: str) -> list[str]:
    """The chosen filters in canonical order; DatasetInvalid naming the valid ones otherwise."""
    valid = ", ".join(FILTERS)
    unknown = [name for name in filters if name not in FILTERS]
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        raise DatasetInvalid([Problem(0, f"unknown filter(s) {names}; valid filters: {valid}", "filters")])
    if not filters:
        raise DatasetInvalid([Problem(0, f"choose at least one filter ({valid})", "filters")])
    if too_long_action not in TOO_LONG_ACTIONS:
        message = f"must be one of {', '.join(TOO_LONG_ACTIONS)}, got {too_long_action!r}"
        raise DatasetInvalid([Problem(0, message, "too_long")])
    return [name for name in FILTERS if name in filters]


def select_rows(
    rows: list[RowRef], report: CleaningReport, filters: list[str], too_long_action: str
) -> tuple[list[RowRef], dict[str, int]]:
    """The rows the filters keep, and how many each removed (a row counts once, for its first filter)."""
    active = [
        name for name in _APPLY_ORDER if name in filters and (name != "too_long" or too_long_action == "drop")
    ]
    removed = dict.fromkeys(filters, 0)
    kept: list[RowRef] = []
    for ref in rows:
        hit = next((name for name in active if ref.key in report.finding(name).flagged), None)
        if hit:
            removed[hit] += 1
        else:
            kept.append(ref)
    if "near_duplicates" in filters:
        duplicates = {ref.key for ref, _ in near_duplicates(kept)}
        removed["near_duplicates"] = len(duplicates)
        kept = [ref for ref in kept if ref.key not in duplicates]
    return kept, removed
