"""What the files API returns (OpenAI's file object, plus tunedeck's dataset details)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.tables import DatasetFile
from app.datasets.cleaning import FILTERS, CleaningOptions, TooLongAction


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
    parent_id: str | None = None
    version: int = 1
    cleaning: dict[str, Any] | None = None
    owner: str | None = Field(None, description="username of who uploaded it")
    private: bool = Field(False, description="only its owner and admins see it")

    @classmethod
    def of(cls, dataset: DatasetFile) -> "FilePublic":
        data = dataset.model_dump(exclude={"created_at", "info", "owner_id"})
        return cls(**data, created_at=int(dataset.created_at.timestamp()))


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FilePublic]
    total: int


class HistogramBinPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    low: int = Field(description="Shortest token length counted in this bin")
    high: int = Field(description="Longest token length counted in this bin")
    count: int
    truncated: bool = Field(description="Every row in this bin is longer than max_seq_length")


class HistogramPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    max_seq_length: int
    bins: list[HistogramBinPublic]


class TokenStatsPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    model: str
    max_seq_length: int
    rows: int
    min: int
    median: float
    p95: int
    max: int
    truncated: int
    histogram: HistogramPublic | None = Field(
        None, description="Token lengths in about 30 bins; bin edges fall on the max_seq_length cut"
    )


class RowsPage(BaseModel):
    split: str
    page: int
    pages: int
    rows: list[dict[str, Any]]


class CleaningQuery(CleaningOptions):
    model: str | None = Field(
        None, description="Base model whose tokenizer counts tokens (default: the default base model)"
    )

    def options(self) -> CleaningOptions:
        """Just the thresholds."""
        return CleaningOptions(**self.model_dump(include=set(CleaningOptions.model_fields)))


class CleanRequest(CleaningQuery):
    filters: list[str] = Field(
        default_factory=list, description=f"Filters to apply, any of: {', '.join(FILTERS)}"
    )
    too_long: TooLongAction = Field(
        "truncate", description="Rows over max_seq_length: keep them (training truncates) or drop them"
    )


class CleaningExample(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    split: str
    index: int = Field(description="0-based index of the row in its split")
    row: dict[str, Any]
    note: str


class CleaningFinding(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    title: str
    description: str
    filter: bool = Field(description="Whether this finding can be applied as a filter")
    count: int
    examples: list[CleaningExample]
    skipped: str | None = None


class CleaningReportPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    file_id: str
    rows: int
    model: str | None
    options: CleaningOptions
    filters: list[str]
    findings: list[CleaningFinding]
