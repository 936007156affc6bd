"""Database engine and sessions; the schema is applied by Alembic (``migrate``)."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from app.core.config import get_settings
from app.core.paths import resource_dir

SQLITE_BUSY_TIMEOUT_MS = 30_000


@lru_cache
def _engine_for(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the web app read while the worker writes; busy_timeout rides out locks.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @sa.event.listens_for(engine, "checkout")
        def _default_busy_timeout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            # a writer that lowered it for one quick transaction does not pass that on
            dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def get_engine() -> sa.Engine:
    """The engine for the configured database (one per URL per process)."""
    settings = get_settings()
    if settings.sqlalchemy_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return _engine_for(settings.sqlalchemy_url)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits once at the end, or rolls back on error (tasks, CLI)."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
        except BaseException:
            finish(session, ok=False)
            raise
        finish(session, ok=True)


def migrate() -> None:
    """Bring the database schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resource_dir("migrations")))
    config.set_main_option("sqlalchemy.url", get_settings().sqlalchemy_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def alembic_dir() -> Path:
    return resource_dir("migrations")


def after_commit(session: Session, action: Callable[[], object]) -> None:
    """Run ``action`` once the session's transaction has committed (e.g. enqueue a task)."""
    session.info.setdefault("after_commit", []).append(action)


def on_rollback(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` if the transaction is rolled back (e.g. delete artifacts just written)."""
    session.info.setdefault("on_rollback", []).append(action)


def finish(session: Session, *, ok: bool) -> None:
    """Commit (running after-commit actions) or roll back (running clean-up actions)."""
    if ok:
        try:
            session.commit()
        except BaseException:
            finish(session, ok=False)
            raise
        session.info.pop("on_rollback", None)
        for action in session.info.pop("after_commit", []):
            action()
    else:
        session.rollback()
        session.info.pop("after_commit", None)
        for action in session.info.pop("on_rollback", []):
            action()


def read_session() -> Session:
    """A session for reads only: nothing to commit (use as a context manager)."""
    return Session(get_engine(), expire_on_commit=False)
