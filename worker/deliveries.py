"""Sending the outbox: POST each delivery signed, retry failures with backoff. Short-lane work.

A delivery is queued as a ``tunedeck.deliver`` task when the transaction that made it commits
(app/core/outbox.py); a failed attempt queues its retry with the backoff as countdown. A
short-lane worker also sweeps the outbox for deliveries whose message was lost (a broker outage).
Each attempt is claimed with one conditional UPDATE that only one process can win, so no two
processes POST the same attempt. A claim holds the delivery for ``CLAIM_SECONDS``; if its sender
dies mid-POST the delivery falls due again then. Receivers should therefore expect, rarely, a
repeat of a delivery id (at least once, never twice at the same time).
"""

import hashlib
import hmac
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlmodel import Session, col, select, update

from app.core.config import get_settings
from app.core.db import read_session, session_scope
from app.core.netguard import vet_host
from app.core.queue import DELIVER_TASK, send_short_task
from app.core.tables import DeliveryStatus, Webhook, WebhookDelivery
from app.core.timeutil import utcnow

TIMEOUT_SECONDS = 10.0
CLAIM_SECONDS = 60.0  # longer than a POST can take
MAX_BACKOFF_SECONDS = 3600.0
SWEEP_SECONDS = 10.0  # how often a short-lane worker looks for deliveries whose task was lost
LOST_AFTER = 5.0  # a delivery due this long without being sent lost its task
BATCH = 20
PARALLEL_POSTS = 4  # per process: one slow receiver does not hold up everyone else's
MAX_ERROR_CHARS = 300

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """One attempt at one delivery, taken by this process (``attempt`` is its fencing token)."""

    delivery_id: str
    attempt: int
    event: str
    url: str
    secret: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 of ``"<timestamp>.<body>"``: the timestamp is signed too, so a receiver can
    refuse old deliveries replayed at it."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def backoff_seconds(attempt: int) -> float:
    """Wait after failed attempt ``attempt``: doubling from the configured base, at most an hour."""
    return float(min(MAX_BACKOFF_SECONDS, get_settings().webhook_backoff_seconds * 2 ** max(0, attempt - 1)))


def deliver_due(limit: int = BATCH, overdue: float = 0.0) -> int:
    """POST up to ``limit`` deliveries whose time came ``overdue`` seconds ago or more; return how
    many this call sent."""
    ids = _due_ids(limit, overdue)
    if not ids:
        return 0
    with ThreadPoolExecutor(min(PARALLEL_POSTS, len(ids)), thread_name_prefix="webhook-post") as pool:
        return sum(pool.map(deliver, ids))


def deliver(delivery_id: str) -> bool:
    """Claim one delivery and POST it; False when it was not ours to send (not due, or taken).
    A failed attempt with attempts left queues its retry for when its backoff ends."""
    claim = _claim(delivery_id)
    if claim is None:
        return False
    retry_in = _record(claim, post(claim))
    if retry_in is not None:
        send_short_task(DELIVER_TASK, delivery_id, countdown=retry_in)
    return True


def _due_ids(limit: int, overdue: float = 0.0) -> list[str]:
    query = (
        select(WebhookDelivery.id)
        .where(
            col(WebhookDelivery.status) == DeliveryStatus.pending,
            col(WebhookDelivery.next_attempt_at) <= utcnow() - timedelta(seconds=overdue),
        )
        .order_by(col(WebhookDelivery.next_attempt_at))
        .limit(limit)
    )
    with read_session() as session:
        return list(session.exec(query).all())


def _claim(delivery_id: str) -> Claim | None:
    now = utcnow()
    with session_scope() as session:
        won = session.exec(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == delivery_id,
                col(WebhookDelivery.status) == DeliveryStatus.pending,
                col(WebhookDelivery.next_attempt_at) <= now,
            )
            .values(
                attempts=col(WebhookDelivery.attempts) + 1,
                next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS),
            )
        )
        if won.rowcount != 1:
            return None
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None
        hook = session.get(Webhook, delivery.webhook_id)
        if hook is None or not hook.active:
            _give_up(session, delivery, "the webhook was paused before this delivery was sent")
            return None
        return Claim(delivery.id, delivery.attempts, delivery.event, hook.url, hook.secret, delivery.payload)


def _give_up(session: Session, delivery: WebhookDelivery, reason: str) -> None:
    delivery.status, delivery.next_attempt_at, delivery.last_error = DeliveryStatus.failed, None, reason
    session.add(delivery)


def post(claim: Claim) -> Outcome:
    """One signed POST; any answer but 2xx, or no answer within the timeout, is a failure."""
    body = json.dumps(claim.payload, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "tunedeck-webhooks/1",
        "X-Tunedeck-Event": claim.event,
        "X-Tunedeck-Delivery": claim.delivery_id,
        "X-Tunedeck-Timestamp": timestamp,
        "X-Tunedeck-Signature": "sha256=" + sign(claim.secret, timestamp, body),
    }
    # Checked again at each POST: the host's address may have changed since the hook was made
    # (a name that resolved outside then, inside now), or the allowed networks may have. And the
    # POST goes to the address just checked, not to what a second lookup might say (DNS rebinding).
    parts = urlsplit(claim.url)
    host = parts.hostname or ""
    addresses, refusal = vet_host(host)
    if refusal:
        return Outcome(None, refusal)
    if not addresses:  # never let the HTTP client look the name up again: it could answer otherwise
        return Outcome(None, f"could not resolve {host!r}; the delivery is retried later")
    url, extensions = claim.url, {}
    if host.strip("[]") != str(addresses[0]):
        userinfo, _, hostport = parts.netloc.rpartition("@")
        shown = f"[{addresses[0]}]" if addresses[0].version == 6 else str(addresses[0])
        pinned = (f"{userinfo}@" if userinfo else "") + shown + (f":{parts.port}" if parts.port else "")
        url = parts._replace(netloc=pinned).geturl()
        headers["Host"] = hostport
        if parts.scheme.lower() == "https":
            extensions["sni_hostname"] = host  # the certificate is still checked against the name
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS) as client:  # redirects are not followed
            response = client.post(url, content=body, headers=headers, extensions=extensions)
    except Exception as exc:  # refused, timed out, DNS, TLS, a URL httpx rejects: a failed attempt
        return Outcome(None, _short(f"{type(exc).__name__}: {exc}", claim.secret))
    if response.is_success:
        return Outcome(response.status_code, None)
    # Not the body: a receiver's answer is not ours to store (nor a way to read internal services).
    return Outcome(response.status_code, f"the receiver answered HTTP {response.status_code}")


def _short(text: str, secret: str) -> str:
    return text.replace(secret, "[secret]")[:MAX_ERROR_CHARS]


def _record(claim: Claim, outcome: Outcome) -> float | None:
    """Write how the attempt went, unless the delivery moved on without us (fenced by attempt);
    return the seconds until its next attempt, if it gets one."""
    now = utcnow()
    values: dict[str, Any] = {"last_status_code": outcome.status_code, "last_error": outcome.error}
    retry_in = None
    if outcome.ok:
        values |= {"status": DeliveryStatus.succeeded, "delivered_at": now, "next_attempt_at": None}
    elif claim.attempt >= get_settings().webhook_max_attempts:
        values |= {"status": DeliveryStatus.failed, "next_attempt_at": None}
    else:
        retry_in = backoff_seconds(claim.attempt)
        values |= {"next_attempt_at": now + timedelta(seconds=retry_in)}
    with session_scope() as session:
        recorded = session.exec(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == claim.delivery_id,
                col(WebhookDelivery.attempts) == claim.attempt,
                col(WebhookDelivery.status) == DeliveryStatus.pending,
            )
            .values(**values)
        )
    return retry_in if recorded.rowcount == 1 else None


class OutboxSweep:
    """Every ``interval`` seconds, send the deliveries that are due but whose task never came (the
    broker was down when they were made, or lost the message): a short-lane worker's thread."""

    def __init__(self, interval: float = SWEEP_SECONDS) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-sweep", daemon=True)

    def start(self) -> "OutboxSweep":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the POSTs under way (they are not cut off halfway)."""
        self._stop.set()
        self._thread.join(timeout=TIMEOUT_SECONDS + 5)

    def _run(self) -> None:
        delay = self.interval
        while not self._stop.wait(delay):
            try:
                while deliver_due(overdue=LOST_AFTER) == BATCH and not self._stop.is_set():
                    pass  # a backlog: keep going without waiting
                delay = self.interval
            except Exception:  # a busy, unreachable or not yet migrated database: back off a while
                delay = min(max(delay, self.interval) * 2, 60.0)
                log.exception("could not sweep the webhook outbox; trying again in %.0fs", delay)
