"""Workers announce themselves and their devices; the overview lists those seen lately."""

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.core.timeutil import UTCDateTime, utcnow


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


class ProcessRecord(SQLModel, table=True):
    """A process `tunedeck run` supervises (web app, worker, model server) and how it is doing."""

    __tablename__ = "processes"

    id: str = Field(primary_key=True, max_length=300, description="'<host>:<supervisor pid>:<name>'")
    name: str = Field(max_length=255, description="e.g. 'worker tunedeck-12@host' or 'model server'")
    host: str = Field(max_length=255)
    pid: int | None = None
    state: str = Field(max_length=16, description="running, restarting, given_up, stopped")
    restarts: int = 0
    last_exit: str | None = Field(default=None, max_length=100, description="e.g. 'killed by SIGKILL'")
    last_exit_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
