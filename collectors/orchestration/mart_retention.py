"""Retention of the marts per grain: the weekly cleanup deletes the rows of periods past their grain's retention,
but only once the coarser rows built from them exist.

Which tables have a grain, and by which column, is read from the dbt project itself (its manifest): an
incremental model tagged with exactly one cadence whose ``unique_key`` is that grain's period column
(``hour_start`` or ``minute_start`` for hourly, ``day``, ``week_start``, ``month_start``). Everything else is kept:
the presence summary, the per-user weekly activity retention is computed from, the quarter and year rollups.

A period's rows go only when the builds that read them are in ``quality.dbt_builds`` (a build is recorded only when
it and its data tests passed): an hour's once its day was built, a day's once its week and its month were, a week's
once every month it touches was, a month's once the last month of its year was (the quarter and the year are
rolled up from the months). The weekly DAG validates before it cleans up, and every deletion is logged in
``quality.mart_retention_log``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from collectors.config import MartRetentionDays
from collectors.orchestration.build_ledger import EVER, whole_builds
from collectors.orchestration.cadences import CADENCES, DAILY, MONTHLY, WEEKLY, Window

log = logging.getLogger(__name__)

# the period columns a grain's marts are keyed by (their dbt unique_key)
PERIOD_COLUMNS: dict[str, frozenset[str]] = {
    "hourly": frozenset({"hour_start", "minute_start"}),
    "daily": frozenset({"day"}),
    "weekly": frozenset({"week_start"}),
    "monthly": frozenset({"month_start"}),
}


def _coarser_builds(grain: str, period: dt.datetime) -> list[tuple[str, dt.datetime]]:
    """The (cadence, window start) builds that read the rows of ``period`` at ``grain``."""
    if grain == "hourly":
        return [("daily", DAILY.floor(period))]
    if grain == "daily":
        return [("weekly", WEEKLY.floor(period)), ("monthly", MONTHLY.floor(period))]
    if grain == "weekly":
        last_day = period + dt.timedelta(days=6)
        return sorted({("monthly", MONTHLY.floor(period)), ("monthly", MONTHLY.floor(last_day))})
    return [("monthly", period.replace(month=12, day=1))]


@dataclass(frozen=True)
class MartTable:
    name: str  # in schema marts
    grain: str
    period_column: str


@dataclass(frozen=True)
class Pruned:
    table: MartTable
    periods: list[dt.datetime]
    rows: int


def mart_tables(manifest: dict) -> list[MartTable]:
    """The mart tables with a grain, from a dbt manifest (``target/manifest.json``)."""
    tables = []
    for node in manifest["nodes"].values():
        config = node.get("config", {})
        grains = [tag for tag in node.get("tags", []) if tag in PERIOD_COLUMNS]
        key = config.get("unique_key")
        if node.get("resource_type") != "model" or config.get("materialized") != "incremental" or len(grains) != 1:
            continue
        if node.get("schema") == "marts" and isinstance(key, str) and key in PERIOD_COLUMNS[grains[0]]:
            tables.append(MartTable(node.get("alias") or node["name"], grains[0], key))
    return sorted(tables, key=lambda t: t.name)


def _utc(value: dt.date | dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    return dt.datetime.combine(value, dt.time(), dt.UTC)


def _built(conn: psycopg.Connection) -> Callable[[str, dt.datetime], bool]:
    """Whether the ledger holds a whole marts build of a cadence covering the period starting at a moment."""
    windows: dict[str, list[Window]] = {}
    for build in whole_builds(conn, since=EVER, part="marts"):
        windows.setdefault(build.cadence, []).append(build.window)

    def covered(cadence: str, start: dt.datetime) -> bool:
        end = CADENCES[cadence].shift(start)
        return any(w.covers(start, end) for w in windows.get(cadence, ()))

    return covered


def prune_marts(
    conn: psycopg.Connection,
    tables: Iterable[MartTable],
    retention: MartRetentionDays,
    *,
    today: dt.date | None = None,
    dag_id: str | None = None,
    run_id: str | None = None,
) -> list[Pruned]:
    """Delete the rows of every period that ended more than its grain's retention before ``today`` (default: today,
    UTC) and whose coarser builds are in the ledger; log each table's deletion. Periods whose coarser rows are not
    built yet stay, and are logged as kept."""
    midnight = _utc(today or dt.datetime.now(dt.UTC).date())
    covered = _built(conn)
    pruned = []
    for table in tables:
        cutoff = midnight - dt.timedelta(days=retention.for_grain(table.grain))
        target, column = sql.Identifier("marts", table.name), sql.Identifier(table.period_column)
        with conn.transaction():
            if conn.execute("select to_regclass(%s)", (f"marts.{table.name}",)).fetchone()[0] is None:
                continue  # not built yet
            # periods that end by the cutoff: a period starts at least one period before its end
            candidates = conn.execute(
                sql.SQL("select distinct {} from {} where {} < %s order by 1").format(column, target, column),
                (cutoff if table.grain == "hourly" else cutoff.date(),),
            ).fetchall()
            cadence = CADENCES[table.grain]
            expired = [_utc(p) for (p,) in candidates if cadence.shift(_utc(p)) <= cutoff]
            ready = [p for p in expired if all(covered(c, s) for c, s in _coarser_builds(table.grain, p))]
            waiting = len(expired) - len(ready)
            rows = 0
            if ready:
                values = ready if table.grain == "hourly" else [p.date() for p in ready]
                rows = conn.execute(
                    sql.SQL("delete from {} where {} = any(%s)").format(target, column), (values,)
                ).rowcount
            if ready or waiting:
                conn.execute(
                    "insert into quality.mart_retention_log (table_name, grain, retention_days, first_period,"
                    " last_period, periods_deleted, rows_deleted, periods_waiting, dag_id, run_id)"
                    " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        table.name,
                        table.grain,
                        retention.for_grain(table.grain),
                        ready[0] if ready else None,
                        ready[-1] if ready else None,
                        len(ready),
                        rows,
                        waiting,
                        dag_id,
                        run_id,
                    ),
                )
        if ready or waiting:
            log.info(
                "marts.%s: deleted %d rows of %d %s periods past %d days; %d expired periods wait for their coarser "
                "builds",
                table.name,
                rows,
                len(ready),
                table.grain,
                retention.for_grain(table.grain),
                waiting,
            )
        if ready:
            pruned.append(Pruned(table, ready, rows))
    return pruned
