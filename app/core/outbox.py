"""The webhook outbox: deliveries are inserted in the transaction that changes the job, so a
committed status always has its deliveries and a rolled-back one never sends any; each is sent
as a short-lane task once that transaction commits (worker/deliveries.py POSTs it)."""

import math
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, or_, select

from app.core.db import after_commit
from app.core.ids import new_id
from app.core.queue import DELIVER_TASK, send_short_task
from app.core.tables import (
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

FINISHED = {
    JobStatus.succeeded: WebhookEvent.job_succeeded,
    JobStatus.failed: WebhookEvent.job_failed,
    JobStatus.cancelled: WebhookEvent.job_cancelled,
}


def queue_delivery(
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
    after_commit(session, lambda: send_short_task(DELIVER_TASK, delivery.id))
    return delivery


def emit(
    session: Session, job: Job, event: WebhookEvent, data: dict[str, Any] | None = None
) -> list[WebhookDelivery]:
    """Queue ``event`` about ``job`` for every active hook that may hear of it, in the caller's
    transaction, so the deliveries exist exactly when the change they report does."""
    payload = {"event": event.value, "created_at": int(utcnow().timestamp()), "job": job_payload(job)}
    payload |= data or {}
    hooks = _listeners(session, job, event)
    return [queue_delivery(session, hook.id, event, payload, job.id) for hook in hooks]


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
