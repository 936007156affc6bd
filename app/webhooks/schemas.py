"""Request and response shapes of /api/v1/webhooks."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from app.core.tables import SUBSCRIBABLE_EVENTS, DeliveryStatus, Webhook, WebhookDelivery, WebhookScope
from app.webhooks.service import check_events, check_url

EVENTS_HELP = f"any of {[e.value for e in SUBSCRIBABLE_EVENTS]}; default all of them"


class WebhookCreate(BaseModel):
    url: str = Field(max_length=2000, description="http(s) URL that receives the signed POSTs")
    events: list[str] | None = Field(None, description=EVENTS_HELP)
    scope: WebhookScope = Field(
        WebhookScope.mine,
        description="mine: jobs you launch; all: every job you may see (admins only)",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_url(url)

    @field_validator("events")
    @classmethod
    def _events(cls, events: list[str] | None) -> list[str] | None:
        return None if events is None else check_events(events)


class WebhookUpdate(BaseModel):
    active: bool | None = Field(None, description="false pauses the hook: nothing is queued for it")
    events: list[str] | None = Field(None, description=EVENTS_HELP)

    @field_validator("events")
    @classmethod
    def _events(cls, events: list[str] | None) -> list[str] | None:
        return None if events is None else check_events(events)


class WebhookPublic(BaseModel):
    object: Literal["webhook"] = "webhook"
    id: str
    url: str
    events: list[str]
    scope: WebhookScope
    active: bool
    owner: str
    created_at: datetime
    secret: str | None = Field(
        None, description="the signing secret: only in the answer that created the hook"
    )

    @classmethod
    def of(cls, hook: Webhook, secret: str | None = None) -> "WebhookPublic":
        return cls(
            id=hook.id,
            url=hook.url,
            events=hook.events,
            scope=hook.scope,
            active=hook.active,
            owner=hook.owner,
            created_at=hook.created_at,
            secret=secret,
        )


class WebhookList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookPublic]


class DeliveryPublic(BaseModel):
    object: Literal["webhook.delivery"] = "webhook.delivery"
    id: str
    webhook_id: str
    event: str
    job_id: str | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = Field(description="when a pending delivery is tried next")
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> "DeliveryPublic":
        return cls(
            id=delivery.id,
            webhook_id=delivery.webhook_id,
            event=delivery.event,
            job_id=delivery.job_id,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            created_at=delivery.created_at,
            delivered_at=delivery.delivered_at,
            payload=delivery.payload,
        )


class DeliveryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DeliveryPublic]
