"""Webhooks: who may have which hook, their delivery log, test pings and redeliveries. Which
hooks hear about a job, and the outbox they are queued in, are in app/core/outbox.py (the worker
emits too); the POSTs are the worker's (worker/deliveries.py). No HTTP here."""

import secrets
from collections.abc import Sequence
from urllib.parse import urlsplit

from sqlmodel import Session, col, delete, select

from app.auth.deps import Principal
from app.core.errors import Forbidden, NotFound, Unprocessable
from app.core.ids import new_id
from app.core.netguard import vet_host
from app.core.outbox import queue_delivery
from app.core.tables import (
    SUBSCRIBABLE_EVENTS,
    Role,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookScope,
)
from app.core.timeutil import utcnow

SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2000


class WebhookInvalid(Unprocessable):
    """A hook that cannot be made as asked; the message says what to change (a ValueError, so it
    also works inside the request schema's validators)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message, param=param, code=f"invalid_{param}")


# ---- checks ----------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """An http(s) URL with a host: anything else could never receive a POST from us."""
    url = url.strip()
    if not url or len(url) > MAX_URL_LENGTH or any(c.isspace() for c in url):
        raise WebhookInvalid(f"give a URL of 1–{MAX_URL_LENGTH} characters without spaces", "url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise WebhookInvalid(f"{url!r} is not a valid URL", "url") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise WebhookInvalid(f"the URL must start with http:// or https:// (not {parts.scheme}://)", "url")
    if not parts.hostname:
        raise WebhookInvalid("the URL needs a host, e.g. https://example.com/hooks/tunedeck", "url")
    if refusal := vet_host(parts.hostname)[1]:
        raise WebhookInvalid(refusal, "url")
    return url


def check_events(events: Sequence[str] | None) -> list[str]:
    """The events to subscribe to, in canonical order; None means all of them."""
    if events is None:
        return [e.value for e in SUBSCRIBABLE_EVENTS]
    known = {e.value for e in SUBSCRIBABLE_EVENTS}
    unknown = sorted(set(events) - known)
    if unknown:
        raise WebhookInvalid(f"unknown event(s) {unknown}; choose from {sorted(known)}", "events")
    if not events:
        raise WebhookInvalid("choose at least one event", "events")
    return [e.value for e in SUBSCRIBABLE_EVENTS if e.value in events]


def _check_may_create(user: Principal, scope: WebhookScope) -> None:
    if user.role == Role.viewer:
        raise Forbidden("viewers cannot create webhooks; ask an admin for the member role")
    if scope == WebhookScope.all and not user.is_admin:
        raise Forbidden("only an admin can create a webhook for every job (scope 'all'); use scope 'mine'")


# ---- hooks ----------------------------------------------------------------------------------


def create_webhook(
    *,
    session: Session,
    user: Principal,
    url: str,
    events: Sequence[str] | None = None,
    scope: WebhookScope = WebhookScope.mine,
) -> tuple[Webhook, str]:
    """A new hook owned by ``user``; the signing secret is returned here and never again."""
    _check_may_create(user, scope)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    hook = Webhook(
        id=new_id("wh"),
        owner_id=user.user_id,
        owner=user.username,
        url=check_url(url),
        secret=secret,
        events=check_events(events),
        scope=scope,
    )
    session.add(hook)
    session.flush()
    return hook, secret


def list_webhooks(*, session: Session, user: Principal) -> list[Webhook]:
    """The user's own hooks; an admin sees everyone's."""
    query = select(Webhook).order_by(col(Webhook.created_at).desc(), col(Webhook.id))
    if not user.is_admin:
        query = query.where(col(Webhook.owner_id) == user.user_id)
    return list(session.exec(query).all())


def get_webhook(*, session: Session, hook_id: str, user: Principal) -> Webhook:
    """The hook, if it is ``user``'s (or ``user`` is an admin); someone else's does not exist."""
    hook = session.get(Webhook, hook_id)
    if hook is None or not (user.is_admin or hook.owner_id == user.user_id):
        raise NotFound(f"no webhook with id {hook_id!r}")
    return hook


def update_webhook(
    *, session: Session, hook: Webhook, active: bool | None = None, events: Sequence[str] | None = None
) -> Webhook:
    if active is not None:
        hook.active = active
    if events is not None:
        hook.events = check_events(events)
    session.add(hook)
    return hook


def delete_webhook(*, session: Session, hook: Webhook) -> None:
    """Delete the hook with its delivery log (what was still pending is never sent)."""
    session.exec(delete(WebhookDelivery).where(col(WebhookDelivery.webhook_id) == hook.id))
    session.delete(hook)


# ---- the delivery log ----------------------------------------------------------------------


def list_deliveries(*, session: Session, hook_id: str, limit: int = 50) -> list[WebhookDelivery]:
    """Newest first."""
    query = (
        select(WebhookDelivery)
        .where(col(WebhookDelivery.webhook_id) == hook_id)
        .order_by(col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id))
        .limit(limit)
    )
    return list(session.exec(query).all())


def get_delivery(*, session: Session, delivery_id: str, user: Principal) -> WebhookDelivery:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise NotFound(f"no webhook delivery with id {delivery_id!r}")
    try:
        get_webhook(session=session, hook_id=delivery.webhook_id, user=user)
    except NotFound:
        raise NotFound(f"no webhook delivery with id {delivery_id!r}") from None
    return delivery


def redeliver(*, session: Session, delivery: WebhookDelivery) -> WebhookDelivery:
    """Queue the same event and payload again, as a new entry of the log."""
    return queue_delivery(
        session, delivery.webhook_id, WebhookEvent(delivery.event), delivery.payload, delivery.job_id
    )


def ping(*, session: Session, hook: Webhook) -> WebhookDelivery:
    """Queue a ``ping``: the way to check a receiver and its signature check before a job ends."""
    payload = {
        "event": WebhookEvent.ping.value,
        "created_at": int(utcnow().timestamp()),
        "webhook": {"id": hook.id, "url": hook.url, "events": hook.events, "scope": hook.scope.value},
    }
    return queue_delivery(session, hook.id, WebhookEvent.ping, payload, None)
