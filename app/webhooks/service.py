"""Webhooks and their outbox: who may have which hook, and which hooks hear about a job.

``emit`` inserts the deliveries in the transaction that changes the job (the outbox pattern): a
committed status always has its deliveries, a rolled-back one never sends any. The sender
(``app.webhooks.delivery``) POSTs them afterwards. No HTTP here.
"""

import ipaddress
import math
import secrets
import socket
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import Session, col, delete, or_, select

from app.auth.deps import Principal
from app.core.config import get_settings
from app.core.errors import Forbidden, NotFound, Unprocessable
from app.core.ids import new_id
from app.core.tables import (
    SUBSCRIBABLE_EVENTS,
    Job,
    JobStatus,
    Role,
    User,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookScope,
)
from app.core.timeutil import utcnow

SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2000
FINISHED = {
    JobStatus.succeeded: WebhookEvent.job_succeeded,
    JobStatus.failed: WebhookEvent.job_failed,
    JobStatus.cancelled: WebhookEvent.job_cancelled,
}


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


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def vet_host(host: str) -> tuple[list[IPAddress], str | None]:
    """The addresses ``host`` is or resolves to, and why webhooks may not POST there (None: they
    may). A webhook is a request our servers make for a user, so it must not reach what only
    they can reach (the cloud metadata service, the database, a neighbour's admin port): a host
    that is or resolves to a loopback, private, link-local or reserved address is refused unless
    TUNEDECK_WEBHOOK_ALLOWED_NETWORKS names its network. An IPv6 address that carries an IPv4 one
    (IPv4-mapped or -compatible, NAT64, 6to4, Teredo) is judged by the IPv4 address it carries.
    A host that does not resolve gives no addresses and no refusal: a hook may be made for a name
    not in DNS yet, but nothing is ever sent to it until it resolves (see ``delivery.post``)."""
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return [], None
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found))
    allowed = _allowed_networks(get_settings().webhook_allowed_networks)
    for address in addresses:
        judged = embedded_ipv4(address) or address
        if not judged.is_global and not any(judged in network for network in allowed):
            shown = host if host.strip("[]") == str(address) else f"{host} ({address})"
            inside = f", which carries {judged}" if judged is not address else ""
            refusal = (
                f"webhooks may not be sent to {shown}{inside}, an internal address; an admin can allow its"
                " network with TUNEDECK_WEBHOOK_ALLOWED_NETWORKS"
            )
            return addresses, refusal
    return addresses, None


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated, still routed by some stacks


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (and reaches, through a translator or tunnel), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # (server, client): the client is where packets go
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in network for network in _NAT64) or address in _IPV4_TRANSLATED:
        return low32
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1 (judged as themselves)
        return low32
    return None


def _allowed_networks(setting: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in setting.split(",") if part.strip()]


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
    return _queue(
        session, delivery.webhook_id, WebhookEvent(delivery.event), delivery.payload, delivery.job_id
    )


def ping(*, session: Session, hook: Webhook) -> WebhookDelivery:
    """Queue a ``ping``: the way to check a receiver and its signature check before a job ends."""
    payload = {
        "event": WebhookEvent.ping.value,
        "created_at": int(utcnow().timestamp()),
        "webhook": {"id": hook.id, "url": hook.url, "events": hook.events, "scope": hook.scope.value},
    }
    return _queue(session, hook.id, WebhookEvent.ping, payload, None)


def _queue(
    session: Session, hook_id: str, event: WebhookEvent, payload: dict[str, Any], job_id: str | None
) -> WebhookDelivery:
    delivery = WebhookDelivery(
        id=new_id("whd"),
        webhook_id=hook_id,
        event=event.value,
        job_id=job_id,
        payload=payload,
        next_attempt_at=utcnow(),
    )
    session.add(delivery)
    return delivery


# ---- emitting ------------------------------------------------------------------------------


def emit(
    session: Session, job: Job, event: WebhookEvent, data: dict[str, Any] | None = None
) -> list[WebhookDelivery]:
    """Queue ``event`` about ``job`` for every active hook that may hear of it, in the caller's
    transaction, so the deliveries exist exactly when the change they report does."""
    payload = {"event": event.value, "created_at": int(utcnow().timestamp()), "job": job_payload(job)}
    payload |= data or {}
    return [_queue(session, hook.id, event, payload, job.id) for hook in _listeners(session, job, event)]


def emit_finished(session: Session, job: Job) -> None:
    """Tell the hooks how ``job`` ended (nothing while it is still on its way)."""
    event = FINISHED.get(job.status)
    if event is not None:
        emit(session, job, event)


def _listeners(session: Session, job: Job, event: WebhookEvent) -> list[Webhook]:
    query = (
        select(Webhook, User)
        .join(User, col(User.id) == col(Webhook.owner_id))
        .where(
            col(Webhook.active).is_(True),
            col(User.disabled).is_(False),
            or_(col(Webhook.owner_id) == job.owner_id, col(Webhook.scope) == WebhookScope.all),
        )
        .order_by(col(Webhook.id))
    )
    rows = session.exec(query).all()
    return [hook for hook, owner in rows if event.value in hook.events and _may_hear(hook, owner, job)]


def _may_hear(hook: Webhook, owner: User, job: Job) -> bool:
    """Own jobs always; with scope "all", the jobs the owner may see now (private: admins only)."""
    if job.owner_id is not None and job.owner_id == owner.id:
        return True
    return hook.scope == WebhookScope.all and (owner.role == Role.admin or not job.private)


def job_payload(job: Job) -> dict[str, Any]:
    """The job as a receiver needs it (the full object is at GET /api/v1/fine_tuning/jobs/{id})."""
    return {
        "id": job.id,
        "object": "fine_tuning.job",
        "status": job.status.value,
        "model": job.model,
        "fine_tuned_model": job.fine_tuned_model,
        "suffix": job.suffix,
        "owner": job.owner,
        "private": job.private,
        "created_at": _unix(job.created_at),
        "finished_at": _unix(job.finished_at),
        "error": job.error,
        "step": job.step,
        "total_steps": job.total_steps,
        "trained_tokens": job.trained_tokens,
        "train_loss": _finite(job.train_loss),
        "valid_loss": _finite(job.valid_loss),
    }


def _unix(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


def _finite(value: float | None) -> float | None:
    """A diverged job's NaN loss becomes null: NaN is not JSON."""
    return value if value is not None and math.isfinite(value) else None
