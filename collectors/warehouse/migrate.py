"""Schema migrations of the raw and quality schemas, run with alembic."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from collectors.warehouse.db import sqlalchemy_url

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to ``revision`` (idempotent; concurrent callers wait for each other)."""
    command.upgrade(alembic_config(database_url), revision)
