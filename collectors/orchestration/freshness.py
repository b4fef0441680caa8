"""Source freshness: how long ago each raw table last took a row, held to the dbt sources' freshness rules.

The rules are those of ``dbt_project/models/staging/__sources.yml`` (``loaded_at_field``, ``warn_after``,
``error_after``, per source or per table), read from that file, so dbt and this check cannot disagree. The
check is what ``dbt source freshness`` computes (the newest ``loaded_at_field``, its age, pass / warn / error),
but it reads only the partitions that can decide it: a raw table is day-partitioned by its event time, and
``max(ingested_at)`` over a whole table scans every partition of the retention. Partitions older than the
error threshold plus ``LATE_DAYS`` are skipped: a row whose event time is older still (a late file) does not
make its source fresh, which is what a reviewer wants to know anyway.

``check_freshness`` returns the verdicts; ``store_freshness`` keeps them in ``quality.source_freshness``; the
hourly DAG's ``check_source_freshness`` task does both, every hour. The report shows the last check.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from psycopg import sql

from collectors.warehouse.db import connect

log = logging.getLogger(__name__)

SOURCES_YML = Path("models") / "staging" / "__sources.yml"  # in the dbt project (settings: dbt_project_dir)
LATE_DAYS = 1  # partitions read beyond the error threshold: rows landing up to a day after their event time
PERIODS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class FreshnessRule:
    source_name: str
    table_name: str
    loaded_at_field: str
    warn_after: dt.timedelta | None
    error_after: dt.timedelta | None


@dataclass(frozen=True)
class Freshness:
    """One check of one raw table."""

    rule: FreshnessRule
    checked_at: dt.datetime
    lookback_from: dt.datetime
    max_loaded_at: dt.datetime | None

    @property
    def age(self) -> dt.timedelta | None:
        return None if self.max_loaded_at is None else self.checked_at - self.max_loaded_at

    @property
    def status(self) -> str:
        """dbt's verdict: error past error_after (or no row at all), warn past warn_after, else pass."""
        age = self.age
        if age is None:
            return "error"
        if self.rule.error_after is not None and age > self.rule.error_after:
            return "error"
        if self.rule.warn_after is not None and age > self.rule.warn_after:
            return "warn"
        return "pass"


def _after(value: Any) -> dt.timedelta | None:
    if not isinstance(value, dict) or value.get("count") is None:
        return None
    return dt.timedelta(seconds=int(value["count"]) * PERIODS[str(value.get("period", "hour"))])


def load_rules(path: Path | None = None) -> list[FreshnessRule]:
    """Every table with a freshness rule (a table's own settings override its source's, as in dbt)."""
    if path is None:
        from collectors.config import get_settings

        path = Path(get_settings().dbt_project_dir) / SOURCES_YML
    document = yaml.safe_load(path.read_text())
    rules: list[FreshnessRule] = []
    for source in document.get("sources") or []:
        for table in source.get("tables") or []:
            freshness = table.get("freshness", source.get("freshness"))
            field = table.get("loaded_at_field", source.get("loaded_at_field"))
            if not freshness or not field:  # dbt: no rule, nothing checked
                continue
            warn, error = _after(freshness.get("warn_after")), _after(freshness.get("error_after"))
            if warn is None and error is None:
                continue
            rules.append(FreshnessRule(str(source["name"]), str(table["name"]), str(field), warn, error))
    return rules


def check_freshness(
    database_url: str, *, rules: list[FreshnessRule] | None = None, now: dt.datetime | None = None
) -> list[Freshness]:
    """The newest load time of every ruled raw table, read from its recent partitions only."""
    rules = load_rules() if rules is None else rules
    now = now or dt.datetime.now(dt.UTC)
    checks: list[Freshness] = []
    with connect(database_url) as conn:
        partition_columns = dict(conn.execute("select table_name, partition_column from quality.raw_tables"))
        for rule in rules:
            since = lookback_from(rule, now)
            query = freshness_query(rule, since, partition_columns.get(rule.table_name))
            (newest,) = conn.execute(query).fetchone() or (None,)
            checks.append(Freshness(rule, now, since, newest))
    return checks


def lookback_from(rule: FreshnessRule, now: dt.datetime) -> dt.datetime:
    """The oldest partition key read: midnight of the day the longest threshold reaches, ``LATE_DAYS`` before."""
    longest = max(t for t in (rule.warn_after, rule.error_after) if t is not None)
    return dt.datetime.combine((now - longest).date() - dt.timedelta(days=LATE_DAYS), dt.time(), dt.UTC)


def freshness_query(rule: FreshnessRule, since: dt.datetime, partition_column: str | None) -> sql.Composed:
    """``max(loaded_at_field)`` over the partitions from ``since`` on (the whole table if it is not partitioned)."""
    query = sql.SQL("select max({loaded}) from raw.{table}").format(
        loaded=sql.Identifier(rule.loaded_at_field), table=sql.Identifier(rule.table_name)
    )
    if partition_column:  # a literal bound, so the planner prunes the older partitions
        query += sql.SQL(" where {column} >= {since}").format(
            column=sql.Identifier(partition_column), since=sql.Literal(since)
        )
    return query


def store_freshness(
    database_url: str, checks: list[Freshness], *, dag_id: str | None = None, run_id: str | None = None
) -> None:
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.executemany(
            "insert into quality.source_freshness (checked_at, source_name, table_name, loaded_at_field,"
            " max_loaded_at, age_seconds, warn_after_s, error_after_s, lookback_from, status, dag_id, run_id)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) on conflict do nothing",
            [
                (
                    c.checked_at,
                    c.rule.source_name,
                    c.rule.table_name,
                    c.rule.loaded_at_field,
                    c.max_loaded_at,
                    None if c.age is None else c.age.total_seconds(),
                    None if c.rule.warn_after is None else c.rule.warn_after.total_seconds(),
                    None if c.rule.error_after is None else c.rule.error_after.total_seconds(),
                    c.lookback_from,
                    c.status,
                    dag_id,
                    run_id,
                )
                for c in checks
            ],
        )
        conn.commit()


def record_freshness(database_url: str, *, dag_id: str | None = None, run_id: str | None = None) -> list[Freshness]:
    """Check and keep; logs a stale source as a warning (a finding for the report, not a task failure)."""
    checks = check_freshness(database_url)
    store_freshness(database_url, checks, dag_id=dag_id, run_id=run_id)
    for c in checks:
        level = logging.WARNING if c.status != "pass" else logging.INFO
        log.log(level, "raw.%s: %s (newest %s)", c.rule.table_name, c.status, c.max_loaded_at)
    return checks
