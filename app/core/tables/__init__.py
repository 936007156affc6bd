"""Database tables. Alembic (``migrations/``) owns the schema; these describe it."""

from app.core.tables.account import ApiKey, AppSecret, AuditEvent, LoginSession, LoginThrottle, Role, User
from app.core.tables.base_model import BaseModelRecord
from app.core.tables.dataset import DatasetFile
from app.core.tables.evals import RUN_UNDER_WAY, Eval, EvalOutputItem, EvalRun, EvalRunStatus
from app.core.tables.job import (
    ACTIVE,
    FINISHED,
    MERGE_UNDER_WAY,
    WAITING,
    Checkpoint,
    Job,
    JobEvent,
    JobStatus,
    Merge,
    MergeStatus,
    Metric,
)
from app.core.tables.playground import BatchOutput, BatchRun, BatchStatus, Vote
from app.core.tables.preset import Preset
from app.core.tables.webhook import (
    SUBSCRIBABLE_EVENTS,
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookScope,
)
from app.core.tables.worker import ProcessRecord, WorkerRecord

__all__ = [
    "ACTIVE",
    "FINISHED",
    "MERGE_UNDER_WAY",
    "RUN_UNDER_WAY",
    "SUBSCRIBABLE_EVENTS",
    "WAITING",
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
    "Eval",
    "EvalOutputItem",
    "EvalRun",
    "EvalRunStatus",
    "Job",
    "JobEvent",
    "JobStatus",
    "LoginSession",
    "LoginThrottle",
    "Merge",
    "MergeStatus",
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
