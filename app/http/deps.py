"""Shared route dependencies: the request's database session and the artifact store."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlmodel import Session

from app.core.db import finish, get_engine
from app.core.storage import ArtifactStore, get_store


def get_session() -> Iterator[Session]:
    """One session per request; routes that write call ``commit`` once, errors roll back."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
        except BaseException:
            finish(session, ok=False)
            raise


def commit(session: Session) -> None:
    """Commit the request's work, then run what waits for the commit (enqueueing tasks)."""
    finish(session, ok=True)


# The largest integer the databases store: ids, cursors and offsets above it are refused (422), not a 500.
DB_INT_MAX = 2**63 - 1

SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
