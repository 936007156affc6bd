"""Workers announce themselves and their devices; the overview lists those seen lately."""

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.timeutil import UTCDateTime, utcnow


class WorkerRecord(SQLModel, table=True):
    """A worker process: where it runs, what device it trains on, when it last said so."""

    __tablename__ = "workers"

    name: str = Field(primary_key=True, max_length=255, description="Celery hostname, e.g. gpu0@host")
    host: str = Field(max_length=255)
    pid: int
    device: str = Field(max_length=255, description="e.g. 'NVIDIA H200' or 'cpu'")
    device_count: int = 1
    device_memory_gib: float | None = Field(default=None, description="per device; RAM on CPU")
    queue: str = Field(max_length=255)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    heartbeat_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    stopped_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
