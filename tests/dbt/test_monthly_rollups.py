"""Month, quarter and year rollups built the way the monthly DAG builds them: from the daily marts, never raw.

A warehouse of its own holds a few hand-made days around a week boundary, a quarter and a year end (Thursday
20 November 2025, Sunday 7 and Monday 8 December 2025, Monday 5 January 2026). The daily marts are built once
from raw; then each month is built with the monthly cadence's own selection over its window, as
``telemetry_monthly`` runs it. Every expectation is worked out here from the raw rows or read from the daily
marts the rollups must agree with.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from collectors.dev import local_postgres
from collectors.orchestration import dbt_runner as dbt
from collectors.orchestration.builds import build_part, selection
from collectors.orchestration.cadences import DAILY, MONTHLY, Window
from tests.dbt.raw_rows import (
    Histogram,
    HostMinute,
    Snapshot,
    at,
    ensure_partitions,
    insert_events,
    insert_host_minutes,
    insert_snapshots,
)
from tests.support.server_reports import DROP, variant

# the module's fixture builds four days and three months, and the tests rebuild some: about a minute on two cores
pytestmark = pytest.mark.slow


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


NOVEMBER_DAY = dt.date(2025, 11, 20)
SUNDAY = dt.date(2025, 12, 7)  # the week of Monday 1 December ends here
MONDAY = dt.date(2025, 12, 8)
JANUARY_DAY = dt.date(2026, 1, 5)
DAYS = (NOVEMBER_DAY, SUNDAY, MONDAY, JANUARY_DAY)
MONTHS = MONTHLY.periods(_midnight(NOVEMBER_DAY), _midnight(JANUARY_DAY))  # November to January, a year end
RELATIVE_ACCURACY = 0.005

SNAPSHOTS = [
    # user 1 is active in November and on both December days: once in each month, the quarter and the year
    Snapshot("A", at(NOVEMBER_DAY, "10:00"), player=[1], total=[1, 5]),
    Snapshot("A", at(SUNDAY, "10:00"), player=[1], menu=[2], total=[1, 2]),
    Snapshot("A", at(SUNDAY, "10:01"), player=[1], total=[1]),
    # Monday: user 3 is listed by two servers in one minute (user-minutes count them twice, their minutes once)
    Snapshot("A", at(MONDAY, "12:00"), player=[1, 3], lobby=[4], total=[1, 3, 4]),
    Snapshot("B", at(MONDAY, "12:00"), player=[3], total=[3]),
    Snapshot("A", at(MONDAY, "12:01"), player=[3], total=[3]),
    Snapshot("A", at(JANUARY_DAY, "08:00"), player=[1], total=[1, 6]),
]  # fmt: skip

PING = {
    SUNDAY: [[12.0, 18.0, 25.0, 31.0], [44.0, 47.0, 52.0, 250.0, 0.0]],
    MONDAY: [[20.0] * 12 + [90.0, 180.0], [33.0, 66.0, 99.0, 132.0]],
}
HOST_MINUTES = [
    HostMinute("h1", at(day, f"09:{minute:02d}"), cpu_percent=40.0 + 10 * minute, memory_percent=50.0,
               tick_rate=60.0 - minute, players=10 + minute, player_ping_ms=Histogram(values))
    for day, minutes in PING.items()
    for minute, values in enumerate(minutes)
]  # fmt: skip

# game server s1's reports: Sunday two in one minute, Monday one without the CPU field and one a minute later
REPORTS = [
    (at(SUNDAY, "09:00"), {"hardware.cpu_usage_percent": 10}),
    (at(SUNDAY, "09:00") + dt.timedelta(seconds=5),
     {"hardware.cpu_usage_percent": 20, "network.player_ping_percentiles.p95": 150}),
    (at(MONDAY, "09:00"), {"hardware.cpu_usage_percent": DROP, "network.player_ping_percentiles.p95": 250}),
    (at(MONDAY, "09:01"), {"hardware.cpu_usage_percent": 90}),
]  # fmt: skip

EVENTS = [
    # onboarding entered on two days of December by u1 (counts once in the month's funnel), once by u2
    ("ev1", "u1", "user", "signup_started", at(SUNDAY, "10:00")),
    ("ev2", "u1", "user", "signup_started", at(MONDAY, "10:00")),
    ("ev3", "u1", "user", "signup_completed", at(MONDAY, "10:05")),
    ("ev4", "u2", "user", "signup_started", at(MONDAY, "11:00")),
    ("ev5", "u2", "app", "open", at(SUNDAY, "11:00")),
    ("ev6", "u2", "app", "open", at(MONDAY, "11:00")),
]


@dataclass
class Months:
    url: str
    target: Path

    def rows(self, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def one(self, query: str, params: tuple[object, ...] = ()) -> dict:
        (found,) = self.rows(query, params)
        return found[0]

    def unique_users(self, table: str, column: str, period: str) -> object:
        (found,) = self.rows(f"select unique_users from marts.{table} where {column} = %s", (period,))
        return found[0]

    def build_days(self, start: dt.date, end: dt.date) -> None:
        """The daily marts, without their data tests: their own tests run those, this one tests the months."""
        chosen = selection(DAILY, "marts")
        dbt.build(chosen.select, _midnight(start), _midnight(end), database_url=self.url, exclude=chosen.exclude,
                  target_path=self.target / "daily", data_tests=False)  # fmt: skip

    def build_month(self, start: dt.datetime) -> None:
        """The month as the monthly DAG's build_marts task builds it (and records it in the ledger)."""
        build_part(MONTHLY, "marts", Window(start, MONTHLY.shift(start)), database_url=self.url,
                   artefacts_dir=self.target, dag_id="telemetry_monthly", run_id=f"{start:%Y-%m}")  # fmt: skip

    def snapshot(self) -> dict[str, list[tuple[object, ...]]]:
        return {table: self.rows(f"select to_jsonb(t)::text from marts.{table} as t order by 1") for table in MARTS}


MARTS = [
    "fct_telemetry_month",
    "fct_telemetry_quarter",
    "fct_telemetry_year",
    "fct_minutes_per_user_monthly",
    "fct_event_counts_monthly",
    "fct_host_metrics_monthly",
    "fct_server_metrics_monthly",
    "fct_funnel_monthly",
]


@pytest.fixture(scope="module")
def months(
    pg_server: local_postgres.PostgresServer, template_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Months]:
    # the worker's test database name (tests/conftest.py, warehouse_url), so that dbt reuses its saved parse
    name = f"telemetry_test_{os.getpid()}"
    template = local_postgres.database_name(template_url)
    url = local_postgres.create_database(pg_server.url, name, template=template, drop=True)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            ensure_partitions(conn, NOVEMBER_DAY, JANUARY_DAY + dt.timedelta(days=1))
            insert_snapshots(conn, SNAPSHOTS)
            insert_host_minutes(conn, HOST_MINUTES)
            insert_events(conn, EVENTS)
            conn.execute("select raw.ensure_partitions('server_reports', %s, %s)", (SUNDAY, MONDAY))
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into raw.server_reports (server_id, reported_at, document, batch_id)"
                    " values (%s, %s, %s, %s)",
                    [("s1", t, json.dumps(variant("s1", t, changes)), uuid.uuid4()) for t, changes in REPORTS],
                )
        built = Months(url, tmp_path_factory.mktemp("months"))
        # the days in one daily range run (equal to a run per day), then each month as the monthly DAG builds it
        built.build_days(NOVEMBER_DAY, JANUARY_DAY + dt.timedelta(days=1))
        for start in MONTHS:
            built.build_month(start)
        yield built
    finally:
        local_postgres.drop_database(pg_server.url, name)


def test_a_user_counts_once_in_the_month_quarter_and_year_but_on_each_day(months: Months) -> None:
    daily = dict(months.rows("select day, unique_users from marts.fct_telemetry_day order by day"))
    assert daily == {NOVEMBER_DAY: 2, SUNDAY: 2, MONDAY: 3, JANUARY_DAY: 2}  # user 1 on each day
    month = dict(months.rows("select month_start, unique_users from marts.fct_telemetry_month"))
    assert month == {dt.date(2025, 11, 1): 2, dt.date(2025, 12, 1): 4, dt.date(2026, 1, 1): 2}  # {1,2,3,4}
    players = months.rows("select unique_players from marts.fct_telemetry_month where month_start = '2025-12-01'")
    assert players == [(2,)]  # users 1 and 3
    quarters = dict(months.rows("select quarter_start, unique_users from marts.fct_telemetry_quarter"))
    assert quarters == {dt.date(2025, 10, 1): 5, dt.date(2026, 1, 1): 2}  # Q4: {1, 2, 3, 4, 5}: user 1 once
    years = months.rows("select year_start, unique_users, months_observed, days_observed from marts.fct_telemetry_year")
    assert sorted(years) == [(dt.date(2025, 1, 1), 5, 2, 3), (dt.date(2026, 1, 1), 2, 1, 1)]
    per_user = months.rows(
        "select month_start, minutes, days_active from marts.fct_minutes_per_user_monthly"
        " where user_id = 1 and state = 'total' order by month_start"
    )
    assert per_user == [(dt.date(2025, 11, 1), 1, 1), (dt.date(2025, 12, 1), 3, 2), (dt.date(2026, 1, 1), 1, 1)]


def test_a_month_across_a_week_boundary_adds_the_days_minutes_and_keeps_the_largest_peak(months: Months) -> None:
    states = ["player", "spectator", "lobby", "menu", "total"]
    columns = ", ".join(f"sum(minutes_{s}), max(peak_{s})" for s in states)
    week_starts = months.rows(
        "select distinct date_trunc('week', day::timestamp)::date from marts.fct_telemetry_day"
        " where day >= '2025-12-01' and day < '2026-01-01'"
    )
    assert len(week_starts) == 2  # the month's days lie in two ISO weeks
    (from_days,) = months.rows(
        f"select count(*), sum(minutes_observed), sum(accounts_created), {columns} from marts.fct_telemetry_day"
        " where day >= '2025-12-01' and day < '2026-01-01'"
    )
    month_columns = ", ".join(f"minutes_{s}, peak_{s}" for s in states)
    (month,) = months.rows(
        f"select days_observed, minutes_observed, accounts_created, {month_columns} from marts.fct_telemetry_month"
        " where month_start = '2025-12-01'"
    )
    assert month == from_days
    # worked out from the snapshots: Sunday has 2 minutes (player 1 + 1, menu 1, total 2 + 1), Monday 2 minutes
    # (player 3 + 1, lobby 1, total 4 + 1: user 3 is on two servers at 12:00 and counts twice)
    assert month == (2, 4, 0, 6, 3, 0, 0, 1, 1, 1, 1, 8, 4)


def test_the_monthly_host_p95_is_within_the_histograms_error_of_the_exact_value(months: Months) -> None:
    row = months.one(
        "select to_jsonb(t) from marts.fct_host_metrics_monthly as t"
        " where month_start = '2025-12-01' and host_id = 'h1'"
    )
    values = sorted(value for minutes in PING.values() for minute in minutes for value in minute)
    assert row["player_ping_ms_count"] == len(values)
    assert row["player_ping_ms_min"] == min(values) and row["player_ping_ms_max"] == max(values)
    assert row["player_ping_ms_avg"] == pytest.approx(sum(values) / len(values), rel=1e-12)
    for q in (0.5, 0.95, 0.99):
        exact = values[max(1, math.ceil(q * len(values))) - 1]
        estimate = row[f"player_ping_ms_p{round(q * 100)}"]
        assert abs(estimate - exact) / exact <= RELATIVE_ACCURACY, (q, estimate, exact)
    cpu = [40.0 + 10 * minute for minutes in PING.values() for minute in range(len(minutes))]
    assert row["minutes_observed"] == len(cpu) == 4
    assert (row["cpu_percent_avg"], row["cpu_percent_min"], row["cpu_percent_max"]) == (45.0, 40.0, 50.0)
    assert row["tick_rate_min"] == 59.0 and row["players_avg"] == 10.5


def test_the_monthly_server_means_are_over_the_months_reports_never_a_mean_of_daily_means(months: Months) -> None:
    row = months.one(
        "select to_jsonb(t) from marts.fct_server_metrics_monthly as t"
        " where month_start = '2025-12-01' and server_id = 's1'"
    )
    assert (row["reports"], row["minutes_observed"]) == (4, 3)
    # 10, 20 on Sunday and 90 on Monday (a report without the field does not count): 40, not (15 + 90) / 2
    assert (row["cpu_usage_percent_avg"], row["cpu_usage_percent_min"], row["cpu_usage_percent_max"]) == (40, 10, 90)
    assert (row["ping_p95_mean"], row["ping_p95_max"]) == ((58 + 150 + 250 + 58) / 4, 250)  # 58: the example's p95
    assert (row["cpu_warning_reports"], row["cpu_warning_minutes"], row["cpu_critical_reports"]) == (1, 1, 0)
    assert (row["ping_p95_warning_reports"], row["ping_p95_warning_minutes"], row["ping_p95_critical_reports"]) == (
        2,
        2,
        1,
    )
    daily = months.rows(
        "select sum(reports), sum(minutes_observed), sum(cpu_warning_minutes) from marts.fct_server_metrics_daily"
        " where server_id = 's1' and day >= '2025-12-01' and day < '2026-01-01'"
    )
    assert daily == [(row["reports"], row["minutes_observed"], row["cpu_warning_minutes"])]


def test_event_counts_and_funnels_roll_up_by_month(months: Months) -> None:
    (events,) = months.rows(
        "select events, user_days, days_observed from marts.fct_event_counts_monthly"
        " where month_start = '2025-12-01' and channel = 'app' and event = 'open'"
    )
    assert events == (2, 2, 2)  # u2 opened the app on both days: two events, two user-days
    daily_sum = months.rows(
        "select sum(events) from marts.fct_event_counts_daily where day >= '2025-12-01' and day < '2026-01-01'"
    )
    monthly_sum = months.rows("select sum(events) from marts.fct_event_counts_monthly where month_start = '2025-12-01'")
    assert daily_sum == monthly_sum == [(len(EVENTS),)]
    steps = months.rows(
        "select step, users from marts.fct_funnel_monthly"
        " where month_start = '2025-12-01' and funnel = 'onboarding' order by step"
    )
    assert steps[:2] == [(1, 2), (2, 1)]  # u1 entered on two days and counts once, with the deeper attempt


def test_each_monthly_build_is_in_the_ledger_with_its_calendar_month(months: Months) -> None:
    built = months.rows(
        "select distinct cadence, part, window_start, window_end from quality.dbt_builds"
        " where dag_id = 'telemetry_monthly' order by window_start"
    )
    assert built == [("monthly", "marts", start, MONTHLY.shift(start)) for start in MONTHS]


def test_rebuilding_a_month_after_its_days_changed_replaces_it_and_a_second_run_changes_nothing(
    months: Months,
) -> None:
    before = months.snapshot()
    with psycopg.connect(months.url, autocommit=True) as conn:
        insert_snapshots(conn, [Snapshot("A", at(MONDAY, "23:00"), player=[7], total=[7, 8])])
    try:
        months.build_days(MONDAY, MONDAY + dt.timedelta(days=1))  # the logic fix: rebuild the day
        months.build_month(MONTHS[1])  # and the month, with nothing written by hand
        changed = months.snapshot()
        assert months.unique_users("fct_telemetry_month", "month_start", "2025-12-01") == 6  # users 7 and 8 too
        assert months.unique_users("fct_telemetry_quarter", "quarter_start", "2025-10-01") == 7
        assert months.unique_users("fct_telemetry_year", "year_start", "2025-01-01") == 7
        months.build_month(MONTHS[1])
        assert months.snapshot() == changed  # idempotent
    finally:
        with psycopg.connect(months.url, autocommit=True) as conn:
            conn.execute("delete from raw.minute_snapshots where minute = %s", (at(MONDAY, "23:00"),))
        months.build_days(MONDAY, MONDAY + dt.timedelta(days=1))
        months.build_month(MONTHS[1])
    assert months.snapshot() == before
