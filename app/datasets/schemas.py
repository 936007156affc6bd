"""What the files API returns (OpenAI's file object, plus tunedeck's dataset details)."""

from typing import Any, Literal

from pydantic import BaseModel

from app.models import DatasetFile


class FilePublic(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"
    format: str
    rows: int
    duplicates_removed: int
    train_rows: int
    validation_rows: int
    validation_split: float
    split_seed: int

    @classmethod
    def of(cls, dataset: DatasetFile) -> "FilePublic":
        data = dataset.model_dump(exclude={"created_at", "info"})
        return cls(**data, created_at=int(dataset.created_at.timestamp()))


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FilePublic]
    total: int


class TokenStatsPublic(BaseModel):
    model: str
    max_seq_length: int
    rows: int
    min: int
    median: float
    p95: int
    max: int
    truncated: int


class RowsPage(BaseModel):
    split: str
    page: int
    pages: int
    rows: list[dict[str, Any]]
