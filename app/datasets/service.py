"""Datasets: validate an upload, store it split into train/validation, describe it."""

import json
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, func, select

from app.datasets.parsing import DatasetInvalid, ParsedDataset, Problem, parse_dataset, to_messages
from app.db import on_rollback
from app.ids import new_id
from app.models import BaseModelRecord, DatasetFile
from app.storage import LocalArtifactStore
from app.tokenizer import chat_tokenizer

SPLITS = ("train", "validation")


class NotFound(LookupError):
    """No such object (or not visible to the caller)."""


def create_dataset(
    *,
    session: Session,
    store: LocalArtifactStore,
    filename: str,
    data: bytes,
    validation_split: float = 0.1,
    split_seed: int = 42,
) -> DatasetFile:
    """Validate ``data`` and store it; raise DatasetInvalid (nothing stored) if anything is wrong."""
    if not 0.0 <= validation_split < 1.0:
        raise DatasetInvalid(
            [Problem(0, "validation_split must be at least 0 and below 1", "validation_split")]
        )
    parsed = parse_dataset(data, filename)
    rows, duplicates = _dedupe(parsed)
    train, validation = split_rows(rows, validation_split, split_seed)
    dataset = DatasetFile(
        id=new_id("file"),
        filename=Path(filename).name[:255] or "dataset",
        bytes=len(data),
        format=parsed.format,
        rows=len(rows),
        duplicates_removed=duplicates,
        train_rows=len(train),
        validation_rows=len(validation),
        validation_split=validation_split,
        split_seed=split_seed,
    )
    folder = f"files/{dataset.id}"
    on_rollback(session, lambda: store.delete(folder))
    with store.new_folder(folder) as tmp:
        (tmp / "original").write_bytes(data)
        for name, part in (("train", train), ("validation", validation)):
            (tmp / f"{name}.jsonl").write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), "utf-8"
            )
    session.add(dataset)
    session.flush()
    return dataset


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


def list_datasets(*, session: Session, limit: int = 100, offset: int = 0) -> tuple[list[DatasetFile], int]:
    """Newest first, with the total count."""
    total = session.exec(select(func.count()).select_from(DatasetFile)).one()
    query = select(DatasetFile).order_by(col(DatasetFile.created_at).desc()).offset(offset).limit(limit)
    return list(session.exec(query).all()), int(total)


def dataset_filenames(*, session: Session, ids: set[str]) -> dict[str, str]:
    """File id → uploaded name, for lists that show datasets by name."""
    if not ids:
        return {}
    query = select(DatasetFile.id, DatasetFile.filename).where(col(DatasetFile.id).in_(ids))
    return dict(session.exec(query).all())


def read_split(*, store: LocalArtifactStore, dataset_id: str, split: str) -> list[dict[str, Any]]:
    """The normalised rows of one split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    text = store.path(f"files/{dataset_id}/{split}.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line]


def preview(
    *, store: LocalArtifactStore, dataset: DatasetFile, split: str, page: int, per_page: int = 20
) -> tuple[list[dict[str, Any]], int]:
    """One page of a split's rows and the number of pages."""
    rows = read_split(store=store, dataset_id=dataset.id, split=split)
    pages = max(1, -(-len(rows) // per_page))
    page = min(max(page, 1), pages)
    return rows[(page - 1) * per_page : page * per_page], pages


@dataclass(frozen=True)
class TokenStats:
    """Token lengths of every row after the base model's chat template."""

    model: str
    max_seq_length: int
    rows: int
    min: int
    median: float
    p95: int
    max: int
    truncated: int
    lengths: list[int]


def token_stats(
    *,
    store: LocalArtifactStore,
    dataset: DatasetFile,
    base_model: BaseModelRecord,
    max_seq_length: int,
) -> TokenStats:
    """Rows, min/median/p95/max tokens and how many rows max_seq_length would truncate."""
    tokenizer = chat_tokenizer(base_model.path)
    rows = [r for split in SPLITS for r in read_split(store=store, dataset_id=dataset.id, split=split)]
    lengths = sorted(tokenizer.count(to_messages(row)) for row in rows)
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
    )
