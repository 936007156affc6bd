"""Alembic owns the schema: migrations apply from scratch and match the table models exactly."""

from pathlib import Path

from alembic import command
from alembic.config import Config

from app.config import get_settings
from app.paths import resource_dir


def test_models_and_migrations_agree(configured: Path) -> None:
    config = Config()
    config.set_main_option("script_location", str(resource_dir("migrations")))
    config.set_main_option("sqlalchemy.url", get_settings().sqlalchemy_url)
    command.check(config)  # raises if autogenerate would emit any operation
