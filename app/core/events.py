"""A job's event log (what the job page and the API's events list show), written by the web
app and the workers alike, in the caller's transaction."""

from sqlmodel import Session

from app.core.tables import JobEvent


def add_event(
    *,
    session: Session,
    job_id: str,
    message: str,
    level: str = "info",
    data: dict[str, object] | None = None,
) -> JobEvent:
    """Add an event to ``job_id``'s log (messages are cut to 2000 characters)."""
    event = JobEvent(job_id=job_id, message=message[:2000], level=level, data=data)
    session.add(event)
    return event
