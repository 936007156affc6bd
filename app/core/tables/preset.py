"""Training presets that users saved: named sets of hyperparameters for the new-job form."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.core.timeutil import UTCDateTime, utcnow


class Preset(SQLModel, table=True):
    """A saved preset; ``values`` is a full, validated TrainingSpec dump."""

    __tablename__ = "presets"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=64)
    name_key: str = Field(
        max_length=64,
        unique=True,
        index=True,
        description="The name lower-cased: names are unique in any case",
    )
    description: str = Field(default="", max_length=200)
    values: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
