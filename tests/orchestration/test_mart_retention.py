"""Mart retention per grain, on a real migrated warehouse: the mart tables come from the dbt project's manifest;
expired periods go only once the coarser rows built from them exist."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pytest

from collectors.config import MartRetentionDays, Settings
from collectors.orchestration import dbt_runner as dbt
from collectors.orchestration.builds import dbt_vars
from collectors.orchestration.mart_retention import MartTable, mart_tables, prune_marts

TODAY = dt.date(2027, 6, 16)  # a Wednesday
RETENTION = MartRetentionDays(hourly=2, daily=10, weekly=30, monthly=100)
UTC = dt.UTC


def test_the_mart_tables_and_their_grains_come_from_the_dbt_project(warehouse_url: str, tmp_path: Path) -> None:
    manifest = dbt.parse_manifest(database_url=warehouse_url, vars=dbt_vars(Settings()), target_path=tmp_path)
    tables = {t.name: (t.grain, t.period_column) for t in mart_tables(manifest)}
    assert tables["fct_host_metrics_hourly"] == ("hourly", "hour_start")
    assert tables["fct_server_metrics_minutely"] == ("hourly", "minute_start")
    assert tables["fct_telemetry_day"] == ("daily", "day")
    assert tables["fct_channel_reliability_daily"] == ("daily", "day")
    assert tables["fct_telemetry_week"] == ("weekly", "week_start")
    assert tables["fct_telemetry_month"] == ("monthly", "month_start")
    # kept whole: the presence summary (look-back of full refreshes), per-user weeks (retention), quarter and year
    for kept in (
        "int_message_presence_hourly",
        "int_user_activity_weekly",
        "fct_telemetry_quarter",
        "fct_telemetry_year",
    ):
        assert kept not in tables
    assert {grain for grain, _ in tables.values()} == {"hourly", "daily", "weekly", "monthly"}


TABLES = [
    MartTable("fct_demo_hourly", "hourly", "hour_start"),
    MartTable("fct_demo_daily", "daily", "day"),
    MartTable("fct_demo_weekly", "weekly", "week_start"),
    MartTable("fct_demo_monthly", "monthly", "month_start"),
]


def built(conn: psycopg.Connection, cadence: str, start: dt.datetime, end: dt.datetime) -> None:
    conn.execute(
        "insert into quality.dbt_builds (cadence, part, window_start, window_end, nodes, elapsed_seconds)"
        " values (%s, 'marts', %s, %s, 1, 0)",
        (cadence, start, end),
    )


def at(day: dt.date, hour: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), UTC)


@pytest.fixture
def marts(db: psycopg.Connection) -> psycopg.Connection:
    """Four small marts, one per grain, each with two rows per period."""
    db.execute("create table marts.fct_demo_hourly (hour_start timestamptz, v int)")
    db.execute(
        "insert into marts.fct_demo_hourly select h, v from generate_series(%s::timestamptz, %s, '1 hour') as h,"
        " generate_series(1, 2) as v",
        (at(TODAY - dt.timedelta(days=5)), at(TODAY, 23)),
    )
    for table, column, step, first in (
        ("fct_demo_daily", "day", "1 day", TODAY - dt.timedelta(days=20)),
        ("fct_demo_weekly", "week_start", "7 days", dt.date(2027, 3, 29)),  # Mondays
        ("fct_demo_monthly", "month_start", "1 month", dt.date(2026, 11, 1)),
    ):
        db.execute(f"create table marts.{table} ({column} date, v int)")
        db.execute(
            f"insert into marts.{table} select d::date, v from generate_series(%s::date, %s::date, %s::interval)"
            " as d, generate_series(1, 2) as v",
            (first, TODAY, step),
        )
    return db


def periods(conn: psycopg.Connection, table: str, column: str) -> list:
    return [p for (p,) in conn.execute(f"select distinct {column} from marts.{table} order by 1").fetchall()]


def test_expired_periods_go_only_once_their_coarser_rows_are_built(marts: psycopg.Connection) -> None:
    # hours ending by TODAY-2 are past the hourly retention: the days TODAY-5 to TODAY-3
    # the daily builds of the first two of the three expired days (TODAY-5 .. TODAY-3); not the third
    built(marts, "daily", at(TODAY - dt.timedelta(days=5)), at(TODAY - dt.timedelta(days=3)))
    # weekly builds cover every week, monthly builds only May 2027 and December 2026
    built(marts, "weekly", at(dt.date(2027, 3, 29)), at(dt.date(2027, 6, 21)))
    built(marts, "monthly", at(dt.date(2027, 5, 1)), at(dt.date(2027, 6, 1)))
    built(marts, "monthly", at(dt.date(2026, 12, 1)), at(dt.date(2027, 1, 1)))

    pruned = {p.table.name: p for p in prune_marts(marts, TABLES, RETENTION, today=TODAY, run_id="weekly")}

    # hourly: the hours of the two days whose daily rows exist went; the third expired day waits for its build
    hours = periods(marts, "fct_demo_hourly", "hour_start")
    assert min(hours) == at(TODAY - dt.timedelta(days=3))
    assert pruned["fct_demo_hourly"].rows == 2 * 48 and len(pruned["fct_demo_hourly"].periods) == 48
    # daily: days before TODAY-10 are expired; only those in May 2027 (month built) and in a built week went
    days = periods(marts, "fct_demo_daily", "day")
    gone = {TODAY - dt.timedelta(days=n) for n in range(11, 21)} - set(days)
    assert gone == {d for d in gone if d.month == 5} and gone  # the June days wait for June's monthly build
    assert all(d.month == 6 for d in days if d < TODAY - dt.timedelta(days=10))
    # weekly: weeks ended by TODAY-30 (May 17) are expired; only those inside May went (April's month is not built)
    weeks = periods(marts, "fct_demo_weekly", "week_start")
    assert dt.date(2027, 5, 3) not in weeks and dt.date(2027, 5, 10) not in weeks
    assert dt.date(2027, 3, 29) in weeks and dt.date(2027, 4, 26) in weeks  # touches April (and May)
    # monthly: months ended by TODAY-100 are expired; 2026's went (December 2026 built: the year is complete)
    months = periods(marts, "fct_demo_monthly", "month_start")
    assert dt.date(2026, 11, 1) not in months and dt.date(2026, 12, 1) not in months
    assert dt.date(2027, 1, 1) in months and dt.date(2027, 2, 1) in months  # 2027 is not complete

    log = marts.execute(
        "select table_name, grain, retention_days, periods_deleted, rows_deleted, periods_waiting, run_id"
        " from quality.mart_retention_log order by table_name"
    ).fetchall()
    by_table = {row[0]: row[1:] for row in log}
    assert by_table["fct_demo_hourly"] == ("hourly", 2, 48, 96, 24, "weekly")  # the third day's 24 hours wait
    assert by_table["fct_demo_monthly"][:4] == ("monthly", 100, 2, 4)
    # a second run deletes nothing more and logs only what still waits
    again = prune_marts(marts, TABLES, RETENTION, today=TODAY)
    assert again == []


def test_a_mart_not_built_yet_is_skipped(db: psycopg.Connection) -> None:
    assert prune_marts(db, TABLES, RETENTION, today=TODAY) == []
    assert db.execute("select count(*) from quality.mart_retention_log").fetchone() == (0,)


def test_a_build_of_one_model_family_covers_no_period(marts: psycopg.Connection) -> None:
    # the day's build restricted to one family: the day's other marts were not rebuilt from those hours
    marts.execute(
        "insert into quality.dbt_builds (cadence, part, window_start, window_end, nodes, elapsed_seconds, family)"
        " values ('daily', 'marts', %s, %s, 1, 0, 'day_log')",
        (at(TODAY - dt.timedelta(days=5)), at(TODAY - dt.timedelta(days=3))),
    )
    assert prune_marts(marts, TABLES[:1], RETENTION, today=TODAY) == []
    assert marts.execute("select periods_waiting from quality.mart_retention_log").fetchall() == [(72,)]
