"""Database preparation shared by the CLI, the receiver's --prepare-database and the maintenance DAG."""

from __future__ import annotations

from collectors.config import Settings
from collectors.warehouse.db import connect
from collectors.warehouse.migrate import upgrade
from collectors.warehouse.partitions import ensure_partitions


def prepare_database(settings: Settings, *, back_days: int | None = None) -> dict[str, int]:
    """Migrate to head and create the partitions every raw table needs; returns partitions created per table."""
    upgrade(settings.database_url)
    with connect(settings.database_url) as conn:
        return ensure_partitions(
            conn, settings.retention, ahead_days=settings.partitions_ahead_days, back_days=back_days
        )
