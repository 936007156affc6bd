"""Merging an adapter into its full-precision base: requested here, run by a worker task."""

from sqlmodel import Session, col, select, update

from app.core.db import after_commit
from app.core.events import add_event
from app.core.ids import new_id
from app.core.queue import send_merge_task
from app.core.tables import MERGE_UNDER_WAY, JobStatus, Merge, MergeStatus
from app.jobs.service import JobConflict, get_job


def request_merge(*, session: Session, job_id: str) -> Merge:
    """Queue a merge of job ``job_id``'s adapter (or return the one already done or under way)."""
    job = get_job(session=session, job_id=job_id)
    if job.status != JobStatus.succeeded or not job.adapter_key:
        raise JobConflict(f"job {job_id} has no adapter to merge (status: {job.status.value})")
    existing = latest_merge(session=session, job_id=job_id)
    if existing is not None and existing.status in (*MERGE_UNDER_WAY, MergeStatus.succeeded):
        return existing
    merge = Merge(id=new_id("merge"), job_id=job_id)
    session.add(merge)
    add_event(session=session, job_id=job_id, message="Merge into the full-precision base requested")
    session.flush()
    after_commit(session, lambda: send_merge_task(merge.id))
    return merge


def cancel_merge(*, session: Session, job_id: str) -> Merge:
    """Stop the job's merge: a queued one at once, a running one at its next stage (≤ one stage)."""
    get_job(session=session, job_id=job_id)
    merge = latest_merge(session=session, job_id=job_id)
    if merge is None or merge.status not in MERGE_UNDER_WAY:
        status = merge.status if merge else "none"
        raise JobConflict(f"job {job_id} has no merge under way to cancel (latest merge: {status})")
    # conditional: the worker may be moving the merge on at the same moment
    target = MergeStatus.cancelled if merge.status == MergeStatus.queued else MergeStatus.cancelling
    changed = session.exec(
        update(Merge)
        .where(col(Merge.id) == merge.id, col(Merge.status) == merge.status)
        .values(status=target, message="cancel requested")
    )
    if changed.rowcount != 1:
        raise JobConflict(f"merge {merge.id} changed while cancelling it; try again")
    add_event(session=session, job_id=job_id, message=f"Merge cancel requested ({merge.status})")
    session.refresh(merge)
    return merge


def latest_merge(*, session: Session, job_id: str) -> Merge | None:
    """The newest merge of the job, if any."""
    query = select(Merge).where(Merge.job_id == job_id).order_by(col(Merge.created_at).desc())
    return session.exec(query).first()
