"""Alembic owns the schema: migrations apply from scratch and match the table models exactly."""

from pathlib import Path

from alembic import command
from alembic.config import Config

from app.core.config import get_settings
from app.core.paths import resource_dir


def test_models_and_migrations_agree(configured: Path) -> None:
    config = Config()
    config.set_main_option("script_location", str(resource_dir("migrations")))
    config.set_main_option("sqlalchemy.url", get_settings().sqlalchemy_url)
    command.check(config)  # raises if autogenerate would emit any operation


def test_jobs_made_public_on_a_private_file_before_the_rule_become_private(configured: Path) -> None:
    """Migration 0015: a job trained or validated on a private file is private."""
    from sqlmodel import select

    from app.core.db import read_session, session_scope
    from app.core.tables import DatasetFile, Job

    with session_scope() as session:  # rows as they were before the rule (the ORM writes them as asked)
        for file_id, private in (("file-secret", True), ("file-open", False)):
            session.add(
                DatasetFile(
                    id=file_id,
                    filename="f.jsonl",
                    bytes=1,
                    format="instruction",
                    rows=2,
                    train_rows=1,
                    validation_rows=1,
                    validation_split=0.1,
                    split_seed=42,
                    private=private,
                )
            )
        session.flush()
        for job_id, train, valid in (
            ("ftjob-on-secret", "file-secret", None),
            ("ftjob-validated-on-secret", "file-open", "file-secret"),
            ("ftjob-open", "file-open", None),
        ):
            session.add(Job(id=job_id, model="m", training_file=train, validation_file=valid, private=False))
    config = Config()
    config.set_main_option("script_location", str(resource_dir("migrations")))
    config.set_main_option("sqlalchemy.url", get_settings().sqlalchemy_url)
    command.downgrade(config, "0014")
    command.upgrade(config, "head")
    with read_session() as session:
        private = {job.id: job.private for job in session.exec(select(Job)).all()}
    assert private == {"ftjob-on-secret": True, "ftjob-validated-on-secret": True, "ftjob-open": False}
