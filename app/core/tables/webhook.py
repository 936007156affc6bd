"""Webhooks: URLs told (with an HMAC signature) when jobs finish or raise health alerts, and the
outbox of deliveries to them, which is also their delivery log."""

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.core.timeutil import UTCDateTime, utcnow


class WebhookEvent(StrEnum):
    """What a hook can be told about; ``ping`` is only sent on request, never subscribed to."""

    job_succeeded = "job.succeeded"
    job_failed = "job.failed"
    job_cancelled = "job.cancelled"
    job_alert = "job.alert"
    ping = "ping"


SUBSCRIBABLE_EVENTS = (
    WebhookEvent.job_succeeded,
    WebhookEvent.job_failed,
    WebhookEvent.job_cancelled,
    WebhookEvent.job_alert,
)


class WebhookScope(StrEnum):
    """Whose jobs a hook hears about: its owner's ("mine"), or every job its owner may see ("all")."""

    mine = "mine"
    all = "all"


class DeliveryStatus(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


class Webhook(SQLModel, table=True):
    """A URL that receives signed POSTs. The secret is kept in clear: signing needs it."""

    __tablename__ = "webhooks"

    id: str = Field(primary_key=True, max_length=64)
    owner_id: int = Field(foreign_key="users.id", index=True)
    owner: str = Field(max_length=64, description="username of owner_id (usernames never change)")
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=128, description="HMAC key; shown once, when the hook is created")
    events: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    scope: WebhookScope = Field(
        default=WebhookScope.mine,
        sa_type=sa.Enum(WebhookScope, native_enum=False, length=16, create_constraint=False),
    )
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WebhookDelivery(SQLModel, table=True):
    """One event for one hook: written with the change it reports, sent (and retried) afterwards."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (sa.Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),)

    id: str = Field(primary_key=True, max_length=64)
    webhook_id: str = Field(max_length=64, foreign_key="webhooks.id", ondelete="CASCADE", index=True)
    event: str = Field(max_length=32)
    job_id: str | None = Field(
        default=None, max_length=64, description="no foreign key: the log outlives jobs"
    )
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    status: DeliveryStatus = Field(
        default=DeliveryStatus.pending,
        sa_type=sa.Enum(DeliveryStatus, native_enum=False, length=16, create_constraint=False),
    )
    attempts: int = Field(default=0, description="POSTs tried so far; also the running send's fencing token")
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
