"""Database tables. Alembic (``migrations/``) owns the schema; these describe it."""

from app.models.base_model import BaseModelRecord
from app.models.dataset import DatasetFile
from app.models.job import Checkpoint, Job, JobEvent, JobStatus, Merge, Metric
from app.models.playground import BatchOutput, BatchRun, BatchStatus, Vote
from app.models.preset import Preset
from app.models.worker import WorkerRecord

__all__ = [
    "BaseModelRecord",
    "BatchOutput",
    "BatchRun",
    "BatchStatus",
    "Checkpoint",
    "DatasetFile",
    "Job",
    "JobEvent",
    "JobStatus",
    "Merge",
    "Metric",
    "Preset",
    "Vote",
    "WorkerRecord",
]
