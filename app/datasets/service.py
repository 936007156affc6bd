"""Datasets: validate an upload, store it split into train/validation, describe it, clean it."""

import json
import math
import random
import re
import statistics
from bisect import bisect_right
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from sqlmodel import Session, col, func, select

from app.core.config import get_settings
from app.core.db import on_rollback
from app.core.errors import NotFound, Unprocessable
from app.core.faults import pause
from app.core.ids import new_id
from app.core.rows import SPLITS, read_split, to_messages
from app.core.storage import ArtifactStore
from app.core.tables import BaseModelRecord, DatasetFile
from app.core.visibility import visible_clause
from app.datasets import archives
from app.datasets.cleaning import (
    CleaningOptions,
    CleaningReport,
    RowRef,
    build_report,
    check_filters,
    select_rows,
)
from app.datasets.parsing import DatasetInvalid, ParsedDataset, Problem, parse_dataset
from app.datasets.tokenizer import chat_tokenizer

SEED_MAX = 2**31 - 1  # what every database's integer column holds


def create_dataset(
    *,
    session: Session,
    store: ArtifactStore,
    filename: str,
    data: bytes,
    validation_split: float = 0.1,
    split_seed: int = 42,
) -> DatasetFile:
    """Validate ``data`` and store it; raise DatasetInvalid (nothing stored) if anything is wrong.
    CPU-bound for large files: routes call it off the event loop."""
    if not 0.0 <= validation_split < 1.0:
        raise DatasetInvalid(
            [Problem(0, "validation_split must be at least 0 and below 1", "validation_split")]
        )
    if not 0 <= split_seed <= SEED_MAX:
        raise DatasetInvalid(
            [Problem(0, f"split_seed must be a whole number from 0 to {SEED_MAX}", "split_seed")]
        )
    pause("parse_delay")
    payload, name = (data, filename)
    if archives.is_archive(filename):  # one data file inside, read in memory
        payload, name = archives.unpack(data, filename, limit=get_settings().max_upload_bytes)
    parsed = parse_dataset(payload, name)
    rows, duplicates = _dedupe(parsed)
    train, validation = split_rows(rows, validation_split, split_seed)
    dataset = DatasetFile(
        id=new_id("file"),
        filename=_display_name(filename),
        bytes=len(data),
        format=parsed.format,
        rows=len(rows),
        duplicates_removed=duplicates,
        train_rows=len(train),
        validation_rows=len(validation),
        validation_split=validation_split,
        split_seed=split_seed,
    )
    _store(session=session, store=store, dataset=dataset, original=data, splits=_jsonl(train, validation))
    return dataset


EVAL_ITEMS = "eval_items"  # the format of a file uploaded with purpose "evals"


class NotTrainingData(Unprocessable):
    """Asked of an eval items file what only training data has (stats, cleaning, training)."""

    code = "not_training_data"


def training_only(dataset: DatasetFile) -> None:
    if dataset.purpose != "fine-tune":
        raise NotTrainingData(
            f"file {dataset.id} holds eval items (purpose {dataset.purpose!r}): it has no splits, token "
            "statistics or cleaning report; eval runs read its items",
            param="file_id",
        )


def create_eval_items(*, session: Session, store: ArtifactStore, filename: str, data: bytes) -> DatasetFile:
    """A file of eval items (purpose "evals"): JSONL, one object a line, each ``{"item": {…}}``
    (optionally with a ``sample``) as OpenAI has them, or a bare object, which becomes the item.
    Items are graded as given: no splitting, no deduplication. Refused whole (DatasetInvalid,
    nothing stored) when a line is not a JSON object."""
    pause("parse_delay")
    problems: list[Problem] = []
    items: list[dict[str, Any]] = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetInvalid([Problem(0, "the file is not UTF-8 text")]) from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(number, f"not valid JSON ({exc.msg})"))
            continue
        if not isinstance(value, dict):
            problems.append(Problem(number, "each line is one JSON object (an eval item)"))
            continue
        wrapped = isinstance(value.get("item"), dict) and set(value) <= {"item", "sample"}
        items.append(value if wrapped else {"item": value})
    if problems:
        raise DatasetInvalid(problems)
    if not items:
        raise DatasetInvalid([Problem(0, "the file holds no items")])
    dataset = DatasetFile(
        id=new_id("file"),
        filename=_display_name(filename),
        purpose="evals",
        bytes=len(data),
        format=EVAL_ITEMS,
        rows=len(items),
        train_rows=len(items),
        validation_rows=0,
        validation_split=0.0,
        split_seed=0,
    )
    lines = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items).encode("utf-8")
    _store(session=session, store=store, dataset=dataset, original=data, splits={"items": lines})
    return dataset


def _display_name(filename: str) -> str:
    """The uploaded name as sent (it is only ever shown, never used as a path), minus control characters."""
    return "".join(c for c in filename if c.isprintable())[:255] or "dataset"


def _jsonl(train: list[dict[str, Any]], validation: list[dict[str, Any]]) -> dict[str, bytes]:
    return {
        name: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part).encode("utf-8")
        for name, part in (("train", train), ("validation", validation))
    }


def _store(
    *,
    session: Session,
    store: ArtifactStore,
    dataset: DatasetFile,
    original: bytes,
    splits: dict[str, bytes],
) -> None:
    """Write the dataset's folder in one rename and add its row; a rollback deletes the folder."""
    folder = f"files/{dataset.id}"
    on_rollback(session, lambda: store.delete(folder))
    with store.new_folder(folder) as tmp:
        (tmp / "original").write_bytes(original)
        for name, data in splits.items():
            (tmp / f"{name}.jsonl").write_bytes(data)
    session.add(dataset)
    session.flush()


def _dedupe(parsed: ParsedDataset) -> tuple[list[dict[str, Any]], int]:
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    for row in parsed.rows:
        key = json.dumps(row, sort_keys=True, ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows, len(parsed.rows) - len(rows)


def split_rows(
    rows: list[dict[str, Any]], ratio: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A seeded shuffle split; at least one validation row when ratio > 0 and rows allow."""
    if ratio <= 0 or len(rows) < 2:
        return list(rows), []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_validation = min(len(rows) - 1, max(1, round(len(rows) * ratio)))
    held_out = set(order[:n_validation])
    train = [row for i, row in enumerate(rows) if i not in held_out]
    validation = [row for i, row in enumerate(rows) if i in held_out]
    return train, validation


def get_dataset(*, session: Session, dataset_id: str) -> DatasetFile:
    """The dataset ``dataset_id`` or NotFound."""
    dataset = session.get(DatasetFile, dataset_id)
    if dataset is None:
        raise NotFound(f"no file with id {dataset_id!r}")
    return dataset


def list_datasets(
    *, session: Session, limit: int = 100, offset: int = 0, viewer_id: int | None = None
) -> tuple[list[DatasetFile], int]:
    """Newest first, with the total count; ``viewer_id`` leaves out other users' private files."""
    visible = visible_clause(DatasetFile, viewer_id)
    total = session.exec(select(func.count()).select_from(DatasetFile).where(visible)).one()
    query = (
        select(DatasetFile)
        .where(visible)
        .order_by(col(DatasetFile.created_at).desc())
        .offset(offset)
        .limit(limit)
    )
    return list(session.exec(query).all()), int(total)


def dataset_filenames(*, session: Session, ids: set[str], viewer_id: int | None) -> dict[str, str]:
    """File id → uploaded name, for lists that show datasets by name; only files ``viewer_id``
    may see (None: an admin), the others keep their id alone."""
    if not ids:
        return {}
    query = select(DatasetFile.id, DatasetFile.filename).where(
        col(DatasetFile.id).in_(ids), visible_clause(DatasetFile, viewer_id)
    )
    return dict(session.exec(query).all())


def preview(
    *, store: ArtifactStore, dataset: DatasetFile, split: str, page: int, per_page: int = 20
) -> tuple[list[dict[str, Any]], int]:
    """One page of a split's rows (of an eval items file: its items) and the number of pages."""
    if dataset.purpose == "evals":
        text = store.read_bytes(f"files/{dataset.id}/items.jsonl").decode("utf-8")
        rows = [json.loads(line) for line in text.splitlines() if line]
    else:
        rows = read_split(store=store, dataset_id=dataset.id, split=split)
    pages = max(1, -(-len(rows) // per_page))
    page = min(max(page, 1), pages)
    return rows[(page - 1) * per_page : page * per_page], pages


@dataclass(frozen=True)
class HistogramBin:
    """Rows whose token length lies in ``low..high`` (both included)."""

    low: int
    high: int
    count: int
    truncated: bool  # every row here is longer than max_seq_length


@dataclass(frozen=True)
class Histogram:
    """Token lengths in equal-width bins whose edges fall on the max_seq_length cut."""

    max_seq_length: int
    bins: list[HistogramBin]
    ticks: list[int]

    @property
    def start(self) -> int:
        """The left edge of the x-range (one below the first bin's lowest length)."""
        return self.bins[0].low - 1 if self.bins else 0

    @property
    def end(self) -> int:
        return self.bins[-1].high if self.bins else self.max_seq_length

    @property
    def peak(self) -> int:
        return max((b.count for b in self.bins), default=0)


def histogram(lengths: list[int], max_seq_length: int, bins: int = 30) -> Histogram:
    """About ``bins`` bins over the lengths and the cut; no bin straddles the cut."""
    if not lengths:
        return Histogram(max_seq_length=max_seq_length, bins=[], ticks=[])
    ordered = sorted(lengths)
    low, high = min(ordered[0], max_seq_length), max(ordered[-1], max_seq_length)
    width = max(1, math.ceil((high - low + 1) / bins))
    # Bins are (edge, edge + width]; the edges step out from the cut both ways.
    first = max(max_seq_length - math.ceil((max_seq_length - low + 1) / width) * width, low - 1)
    last = max_seq_length + math.ceil((high - max_seq_length) / width) * width
    edges = [first, *range(first + width - (first - max_seq_length) % width, last + 1, width)]
    return Histogram(
        max_seq_length=max_seq_length,
        bins=[
            HistogramBin(
                low=a + 1,
                high=b,
                count=bisect_right(ordered, b) - bisect_right(ordered, a),
                truncated=a >= max_seq_length,
            )
            for a, b in pairwise(edges)
        ],
        ticks=_ticks(first, last),
    )


def _ticks(start: int, end: int, count: int = 5) -> list[int]:
    """A few round numbers between ``start`` and ``end`` for an axis."""
    raw = max(1.0, (end - start) / count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(start / step) * step
    return [int(t) for t in range(int(first), end + 1, int(step))]


@dataclass(frozen=True)
class TokenStats:
    """Token lengths of every row after the base model's chat template (classification: the text)."""

    model: str
    max_seq_length: int
    rows: int
    min: int
    median: float
    p95: int
    max: int
    truncated: int
    lengths: list[int]
    histogram: Histogram


def token_stats(
    *,
    store: ArtifactStore,
    dataset: DatasetFile,
    base_model: BaseModelRecord,
    max_seq_length: int,
) -> TokenStats:
    """Rows, min/median/p95/max tokens and how many rows max_seq_length would truncate."""
    tokenizer = chat_tokenizer(base_model.path)
    training_only(dataset)
    rows = [r for split in SPLITS for r in read_split(store=store, dataset_id=dataset.id, split=split)]
    if dataset.format == "classification":  # a classifier reads the text alone, no chat template
        encoded = tokenizer.tokenizer.encode_batch([row["text"] for row in rows], add_special_tokens=False)
        lengths = sorted(len(e.ids) for e in encoded)
    else:
        lengths = sorted(tokenizer.count_many([to_messages(row) for row in rows]))
    p95 = lengths[min(len(lengths) - 1, max(0, round(0.95 * len(lengths)) - 1))]
    return TokenStats(
        model=base_model.id,
        max_seq_length=max_seq_length,
        rows=len(lengths),
        min=lengths[0],
        median=statistics.median(lengths),
        p95=p95,
        max=lengths[-1],
        truncated=sum(1 for n in lengths if n > max_seq_length),
        lengths=lengths,
        histogram=histogram(lengths, max_seq_length),
    )


def list_versions(*, session: Session, dataset_id: str) -> list[DatasetFile]:
    """The cleaned versions made directly from ``dataset_id``, oldest first."""
    query = select(DatasetFile).where(DatasetFile.parent_id == dataset_id)
    return list(session.exec(query.order_by(col(DatasetFile.created_at))).all())


def pick_base_model(*, session: Session, model_id: str | None) -> BaseModelRecord | None:
    """``model_id`` (NotFound if unknown), else the default base model, else any, else None."""
    from app.basemodels.service import get_model  # imported here: that module imports this one

    if model_id:
        return get_model(session=session, model_id=model_id)
    default = session.get(BaseModelRecord, get_settings().default_base_model)
    return default or session.exec(select(BaseModelRecord).order_by(col(BaseModelRecord.id))).first()


def _row_refs(store: ArtifactStore, dataset: DatasetFile) -> list[RowRef]:
    return [
        RowRef(split, index, row)
        for split in SPLITS
        for index, row in enumerate(read_split(store=store, dataset_id=dataset.id, split=split))
    ]


def _report(
    store: ArtifactStore, dataset: DatasetFile, base: BaseModelRecord | None, options: CleaningOptions
) -> tuple[list[RowRef], CleaningReport]:
    rows = _row_refs(store, dataset)
    if base is None:
        return rows, build_report(file_id=dataset.id, rows=rows, options=options)
    tokenizer = chat_tokenizer(base.path)

    def count(row: dict[str, Any]) -> int:
        if dataset.format == "classification":
            return len(tokenizer.tokenizer.encode(row["text"], add_special_tokens=False).ids)
        return tokenizer.count(to_messages(row))

    return rows, build_report(
        file_id=dataset.id, rows=rows, options=options, count_tokens=count, model=base.id
    )


def cleaning_report(
    *,
    session: Session,
    store: ArtifactStore,
    dataset_id: str,
    model_id: str | None = None,
    options: CleaningOptions | None = None,
) -> CleaningReport:
    """Duplicates, short outputs, mojibake, repeated outputs and too-long rows, with examples."""
    dataset = get_dataset(session=session, dataset_id=dataset_id)
    training_only(dataset)
    base = pick_base_model(session=session, model_id=model_id)
    return _report(store, dataset, base, options or CleaningOptions())[1]


def clean_dataset(
    *,
    session: Session,
    store: ArtifactStore,
    dataset_id: str,
    filters: list[str],
    too_long: str = "truncate",
    model_id: str | None = None,
    options: CleaningOptions | None = None,
) -> DatasetFile:
    """Store a new version of the dataset without the rows ``filters`` flag; the parent is kept."""
    parent = get_dataset(session=session, dataset_id=dataset_id)
    training_only(parent)
    chosen = check_filters(filters, too_long)
    base = None
    if "too_long" in chosen:  # only this filter needs token counts
        base = pick_base_model(session=session, model_id=model_id)
        if base is None and too_long == "drop":
            raise DatasetInvalid(
                [Problem(0, "dropping long rows needs a base model to count tokens", "model")]
            )
    rows, report = _report(store, parent, base, options or CleaningOptions())
    kept, removed = select_rows(rows, report, chosen, too_long)
    train = [ref.row for ref in kept if ref.split == "train"]
    if not train:
        message = f"cleaning with {', '.join(chosen)} would leave no training rows; nothing was stored"
        raise DatasetInvalid([Problem(0, message, "filters")])
    action = too_long if "too_long" in chosen else None
    record = _cleaning_record(parent.id, report, chosen, action, removed, rows_after=len(kept))
    splits = _jsonl(train, [ref.row for ref in kept if ref.split == "validation"])
    version = _version_of(parent, splits, train_rows=len(train), rows=len(kept), cleaning=record)
    original = store.read_bytes(f"files/{parent.id}/original")
    _store(session=session, store=store, dataset=version, original=original, splits=splits)
    return version


def _cleaning_record(
    source_id: str,
    report: CleaningReport,
    filters: list[str],
    too_long: str | None,
    removed: dict[str, int],
    *,
    rows_after: int,
) -> dict[str, Any]:
    """What the version remembers of its making (stored as ``DatasetFile.cleaning``)."""
    record: dict[str, Any] = {
        "source_id": source_id,
        "filters": filters,
        "too_long": too_long,
        "removed": removed,
        "rows_before": report.rows,
        "rows_after": rows_after,
        "model": report.model,
        "options": report.options.model_dump(),
    }
    if too_long == "truncate":
        record["truncated"] = report.finding("too_long").count
    return record


_VERSION_SUFFIX = re.compile(r" \(clean v\d+\)$")


def _version_of(
    parent: DatasetFile, splits: dict[str, bytes], *, train_rows: int, rows: int, cleaning: dict[str, Any]
) -> DatasetFile:
    """The new version's row: the parent's split settings, its own counts, size and id."""
    return DatasetFile(
        id=new_id("file"),
        filename=f"{_VERSION_SUFFIX.sub('', parent.filename)[:230]} (clean v{parent.version + 1})",
        bytes=sum(len(data) for data in splits.values()),
        format=parent.format,
        rows=rows,
        duplicates_removed=parent.duplicates_removed,
        train_rows=train_rows,
        validation_rows=rows - train_rows,
        validation_split=parent.validation_split,
        split_seed=parent.split_seed,
        parent_id=parent.id,
        version=parent.version + 1,
        cleaning=cleaning,
    )
