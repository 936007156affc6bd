"""Who may see and change which job or dataset.

Jobs and datasets are seen by the whole team unless marked private (then only by their owner
and admins); another user's private object is answered as if it did not exist (404). Changing
one (cancel, delete, merge, resume, clean) is for its owner and admins (403 for other members).
Objects from before accounts existed have no owner: everyone sees them, admins manage them.
"""

from typing import Any

from fastapi import Request
from sqlmodel import Session

from app.auth.deps import Principal, client_ip
from app.auth.service import audit
from app.core.errors import Forbidden, InvalidRequest, NotFound
from app.core.scheduling import MEMBER_MAX_PRIORITY
from app.core.tables import DatasetFile, Job, Role
from app.core.visibility import Owned, visible_to


def can_see(obj: Owned, user: Principal) -> bool:
    return visible_to(obj, None if user.is_admin else user.user_id)


def can_manage(obj: Owned, user: Principal) -> bool:
    return user.is_admin or (user.role == Role.member and obj.owner_id == user.user_id)


def job_for(session: Session, job_id: str, user: Principal, *, manage: str | None = None) -> Job:
    """The job, if ``user`` may see it (and, when ``manage`` names an action, do that to it)."""
    job = session.get(Job, job_id)
    if job is None or not can_see(job, user):
        raise NotFound(f"no fine-tuning job with id {job_id!r}")
    if manage and not can_manage(job, user):
        raise Forbidden(f"only the job's owner or an admin can {manage} job {job_id}")
    return job


def dataset_for(
    session: Session, dataset_id: str, user: Principal, *, manage: str | None = None
) -> DatasetFile:
    dataset = session.get(DatasetFile, dataset_id)
    if dataset is None or not can_see(dataset, user):
        raise NotFound(f"no file with id {dataset_id!r}")
    if manage and not can_manage(dataset, user):
        raise Forbidden(f"only the file's owner or an admin can {manage} file {dataset_id}")
    return dataset


def check_job_files(
    session: Session, user: Principal, training_file: str | None, validation_file: str | None
) -> None:
    """A job's data files must be ones ``user`` may see: another user's private file is, to this
    user, a file that does not exist (an error naming the field)."""
    for param, file_id in (("training_file", training_file), ("validation_file", validation_file)):
        if file_id:
            try:
                dataset_for(session, file_id, user)
            except NotFound as exc:
                raise InvalidRequest(str(exc), param=param, code=f"invalid_{param}") from None


def log_action(
    session: Session,
    request: Request,
    user: Principal,
    action: str,
    object_type: str,
    object_id: str,
    **detail: Any,
) -> None:
    """Put ``user``'s action in the audit log, in the transaction that does it."""
    audit(
        session=session,
        user_id=user.user_id,
        username=user.username,
        action=action,
        object_type=object_type,
        object_id=object_id,
        ip=client_ip(request),
        detail=detail,
    )


def set_owner(obj: Owned, user: Principal, *, private: bool = False) -> None:
    obj.owner_id, obj.owner, obj.private = user.user_id, user.username, private


def max_priority(user: Principal) -> int:
    """Members queue at 0-5; only admins may put a job ahead of everyone's normal work (6-9)."""
    return 9 if user.is_admin else MEMBER_MAX_PRIORITY


def check_priority(priority: int, user: Principal) -> None:
    if priority > MEMBER_MAX_PRIORITY and not user.is_admin:  # (an admin's 10+ is capped at 9 elsewhere)
        raise Forbidden(f"priority {priority} is for admins; members choose 0-{MEMBER_MAX_PRIORITY}")
