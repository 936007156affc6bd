"""Database tables. Alembic (``migrations/``) owns the schema; these describe it."""

from app.models.base_model import BaseModelRecord
from app.models.dataset import DatasetFile
from app.models.job import Checkpoint, Job, JobEvent, JobStatus, Merge, Metric
from app.models.preset import Preset
from app.models.worker import WorkerRecord

__all__ = [
    "BaseModelRecord",
    "Checkpoint",
    "DatasetFile",
    "Job",
    "JobEvent",
    "JobStatus",
    "Merge",
    "Metric",
    "Preset",
    "WorkerRecord",
]
