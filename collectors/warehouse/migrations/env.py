"""Alembic environment: migrates the database named by the configured URL.

Migrations are plain SQL (``op.execute``): the warehouse has no ORM models.
A session-level advisory lock serialises concurrent ``migrate`` calls.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

MIGRATION_LOCK_ID = 7_464_000_001
url = context.config.get_main_option("sqlalchemy.url")
engine = create_engine(url, future=True)

with engine.connect() as connection:
    connection.execute(text("select pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    connection.commit()
    try:
        context.configure(connection=connection, version_table="warehouse_migrations", transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("select pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()
engine.dispose()
