"""Base models that jobs can fine-tune."""

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.core.timeutil import UTCDateTime, utcnow


class BaseModelRecord(SQLModel, table=True):
    """A registered base model: a local folder of safetensors weights and a tokenizer."""

    __tablename__ = "base_models"

    id: str = Field(primary_key=True, max_length=128, description="Stable name, e.g. smollm2-135m-instruct")
    path: str = Field(max_length=1024, description="Folder holding config.json and *.safetensors")
    description: str = Field(default="", max_length=500)
    architecture: str = Field(default="", max_length=128)
    n_params: int | None = Field(default=None, sa_type=sa.BigInteger)
    trust_remote_code: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
