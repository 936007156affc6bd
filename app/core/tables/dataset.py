"""Uploaded training / validation files (OpenAI's "files"), validated and normalised."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.core.timeutil import UTCDateTime, utcnow


class DatasetFile(SQLModel, table=True):
    """One uploaded dataset. Its rows live in the artifact store under ``files/<id>/``."""

    __tablename__ = "files"

    id: str = Field(primary_key=True, max_length=64)
    filename: str = Field(max_length=255)
    purpose: str = Field(default="fine-tune", max_length=32)
    bytes: int = Field(sa_type=sa.BigInteger)
    format: str = Field(max_length=16, description="instruction, chat or classification")
    rows: int = Field(description="Rows kept after removing exact duplicates")
    duplicates_removed: int = 0
    train_rows: int
    validation_rows: int
    validation_split: float = Field(description="Share of rows held out for validation")
    split_seed: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    info: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    parent_id: str | None = Field(
        default=None, max_length=64, index=True, description="The dataset this cleaned version came from"
    )
    version: int = Field(default=1, description="1 for an upload; parent's version + 1 for a cleaned copy")
    cleaning: dict[str, Any] | None = Field(
        default=None, sa_type=sa.JSON, description="Filters applied to the parent and rows each removed"
    )
    owner: str | None = Field(
        default=None, max_length=64, description="username of owner_id (usernames never change)"
    )
    owner_id: int | None = Field(default=None, index=True, description="the user who uploaded it")
    private: bool = Field(default=False, description="only its owner and admins see it")
