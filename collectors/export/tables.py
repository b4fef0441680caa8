"""What can be exported, and by which column a period is cut.

A mart's period column is the one its dbt config names: ``unique_key`` of the window-incremental marts (they
delete and insert whole periods by it: minute_start, hour_start, day, week_start) and ``replace_ranges``' start of
fct_sessions. Marts rebuilt whole as tables (the retention cohorts) have no period column and are exported whole.
Raw product events are cut by their partition column, from the ingest registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from collectors.ingest.registry import PRODUCT_EVENTS

RAW_EVENTS = f"raw.{PRODUCT_EVENTS.name}"

# the first Jinja expression of a model file is its config(...) call
_CONFIG = re.compile(r"\{\{\s*config\((.*?)\)\s*\}\}", re.S)
_UNIQUE_KEY = re.compile(r"""unique_key\s*=\s*['"](\w+)['"]""")
_RANGE_START = re.compile(r"""replace_ranges\s*=\s*\{[^}]*['"]start['"]\s*:\s*['"](\w+)['"]""", re.S)


@dataclass(frozen=True)
class ExportTable:
    schema: str
    name: str
    period_column: str | None  # None: the whole table, whatever the period
    order_by: tuple[str, ...] = ()  # a deterministic order for row-for-row comparisons; empty: every column

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def file_stem(self) -> str:
        return self.name if self.schema == "marts" else f"{self.schema}.{self.name}"


def period_column_of(model_sql: str) -> str | None:
    """The period column a mart model's config names, if any."""
    config = _CONFIG.search(model_sql)
    if config is None:
        return None
    for pattern in (_UNIQUE_KEY, _RANGE_START):
        found = pattern.search(config.group(1))
        if found:
            return found.group(1)
    return None


def mart_tables(dbt_project: Path) -> dict[str, ExportTable]:
    """Every mart model of the dbt project, by name."""
    return {
        path.stem: ExportTable("marts", path.stem, period_column_of(path.read_text(encoding="utf-8")))
        for path in sorted((dbt_project / "models" / "marts").glob("*.sql"))
    }


def raw_events_table() -> ExportTable:
    """Raw product events, cut by their partition column and ordered by it and the natural key."""
    period = PRODUCT_EVENTS.partition_column
    order = (period, *(k for k in PRODUCT_EVENTS.key if k != period))
    return ExportTable("raw", PRODUCT_EVENTS.name, period, order_by=order)


class UnknownMart(ValueError):
    def __init__(self, name: str, valid: list[str]) -> None:
        super().__init__(f"unknown mart {name!r}; the marts are: {', '.join(valid)}")
