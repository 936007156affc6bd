"""Who may see which job or dataset, as SQL and as a test on one row: the one place the rule is
written. Jobs and datasets are seen by the whole team unless private; a private one only by its
owner and admins (a viewer of None is an admin, who sees all). A job on a private file is itself
private (app/jobs/service.py), so a job's data is never shown to someone its file is hidden from.
"""

from typing import Any

from sqlmodel import col, or_

from app.core.tables import DatasetFile, Job

Owned = Job | DatasetFile


def visible_clause(model: type[Job] | type[DatasetFile], viewer_id: int | None) -> Any:
    """SQL condition for the rows ``viewer_id`` may see (None: an admin, who sees all)."""
    if viewer_id is None:
        return col(model.id).is_not(None)
    return or_(col(model.private).is_(False), col(model.owner_id) == viewer_id)


def hidden_clause(model: type[Job] | type[DatasetFile], viewer_id: int) -> Any:
    """SQL condition for the rows ``viewer_id`` may not see (for a viewer who is not an admin)."""
    return col(model.private).is_(True) & col(model.owner_id).is_distinct_from(viewer_id)


def visible_to(obj: Owned, viewer_id: int | None) -> bool:
    """Whether ``viewer_id`` (None: an admin) may see this one row."""
    return viewer_id is None or not obj.private or obj.owner_id == viewer_id
