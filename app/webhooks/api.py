"""REST: /api/v1/webhooks — hooks, their delivery log, test pings and redeliveries."""

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.auth.access import log_action
from app.auth.deps import CurrentUser
from app.core.tables import WebhookDelivery
from app.http.deps import SessionDep, commit
from app.webhooks import service
from app.webhooks.schemas import (
    DeliveryList,
    DeliveryPublic,
    WebhookCreate,
    WebhookList,
    WebhookPublic,
    WebhookUpdate,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


@router.post("", response_model=WebhookPublic, summary="Create a webhook (the answer holds its secret, once)")
def create_webhook(
    session: SessionDep, request: Request, user: CurrentUser, body: WebhookCreate
) -> WebhookPublic:
    hook, secret = service.create_webhook(
        session=session, user=user, url=body.url, events=body.events, scope=body.scope
    )
    log_action(session, request, user, "webhook_created", "webhook", hook.id, url=hook.url, scope=hook.scope)
    commit(session)
    return WebhookPublic.of(hook, secret)


@router.get("", response_model=WebhookList, summary="Your webhooks (an admin's list has everyone's)")
def list_webhooks(session: SessionDep, user: CurrentUser) -> WebhookList:
    return WebhookList(data=[WebhookPublic.of(h) for h in service.list_webhooks(session=session, user=user)])


@router.get("/{hook_id}", response_model=WebhookPublic)
def get_webhook(session: SessionDep, user: CurrentUser, hook_id: str) -> WebhookPublic:
    return WebhookPublic.of(service.get_webhook(session=session, hook_id=hook_id, user=user))


@router.patch(
    "/{hook_id}", response_model=WebhookPublic, summary="Pause or resume a webhook, or change its events"
)
def update_webhook(
    session: SessionDep, request: Request, user: CurrentUser, hook_id: str, body: WebhookUpdate
) -> WebhookPublic:
    hook = service.get_webhook(session=session, hook_id=hook_id, user=user)
    service.update_webhook(session=session, hook=hook, active=body.active, events=body.events)
    changes = body.model_dump(exclude_none=True)
    log_action(session, request, user, "webhook_updated", "webhook", hook.id, **changes)
    commit(session)
    return WebhookPublic.of(hook)


@router.delete("/{hook_id}", summary="Delete a webhook and its delivery log")
def delete_webhook(
    session: SessionDep, request: Request, user: CurrentUser, hook_id: str
) -> dict[str, object]:
    hook = service.get_webhook(session=session, hook_id=hook_id, user=user)
    service.delete_webhook(session=session, hook=hook)
    log_action(session, request, user, "webhook_deleted", "webhook", hook_id, url=hook.url)
    commit(session)
    return {"id": hook_id, "object": "webhook", "deleted": True}


@router.post(
    "/{hook_id}/test", response_model=DeliveryPublic, summary="Send a ping now; the answer says how it went"
)
def test_webhook(session: SessionDep, user: CurrentUser, hook_id: str) -> DeliveryPublic:
    hook = service.get_webhook(session=session, hook_id=hook_id, user=user)
    return _send_now(session, service.ping(session=session, hook=hook))


@router.get("/{hook_id}/deliveries", response_model=DeliveryList, summary="The delivery log, newest first")
def list_deliveries(
    session: SessionDep, user: CurrentUser, hook_id: str, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> DeliveryList:
    service.get_webhook(session=session, hook_id=hook_id, user=user)
    deliveries = service.list_deliveries(session=session, hook_id=hook_id, limit=limit)
    return DeliveryList(data=[DeliveryPublic.of(d) for d in deliveries])


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryPublic,
    summary="Send a delivery's event again now, as a new entry of the log",
)
def redeliver(session: SessionDep, user: CurrentUser, delivery_id: str) -> DeliveryPublic:
    delivery = service.get_delivery(session=session, delivery_id=delivery_id, user=user)
    return _send_now(session, service.redeliver(session=session, delivery=delivery))


def _send_now(session: SessionDep, delivery: WebhookDelivery) -> DeliveryPublic:
    """Commit: a short-lane worker POSTs it at once; the delivery log shows how it went."""
    commit(session)
    return DeliveryPublic.of(delivery)
