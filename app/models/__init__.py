"""Database tables. Alembic (``migrations/``) owns the schema; these describe it."""

from app.models.account import ApiKey, AppSecret, AuditEvent, LoginSession, LoginThrottle, Role, User
from app.models.base_model import BaseModelRecord
from app.models.dataset import DatasetFile
from app.models.job import Checkpoint, Job, JobEvent, JobStatus, Merge, Metric
from app.models.playground import BatchOutput, BatchRun, BatchStatus, Vote
from app.models.preset import Preset
from app.models.webhook import (
    SUBSCRIBABLE_EVENTS,
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookScope,
)
from app.models.worker import ProcessRecord, WorkerRecord

__all__ = [
    "SUBSCRIBABLE_EVENTS",
    "ApiKey",
    "AppSecret",
    "AuditEvent",
    "BaseModelRecord",
    "BatchOutput",
    "BatchRun",
    "BatchStatus",
    "Checkpoint",
    "DatasetFile",
    "DeliveryStatus",
    "Job",
    "JobEvent",
    "JobStatus",
    "LoginSession",
    "LoginThrottle",
    "Merge",
    "Metric",
    "Preset",
    "ProcessRecord",
    "Role",
    "User",
    "Vote",
    "Webhook",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookScope",
    "WorkerRecord",
]
