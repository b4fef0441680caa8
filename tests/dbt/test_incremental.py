"""Window-incremental builds: a rerun is identical, and an hour-by-hour build equals one run."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.dbt.conftest import DbtWarehouse
from tests.dbt.raw_rows import DAY, WEEK_START

DAY_START = dt.datetime.combine(DAY, dt.time(), tzinfo=dt.UTC)
HOURLY_MARTS = {
    "fct_channel_reliability_hourly": "hour_start",
    "fct_reliability_hourly": "hour_start",
    "fct_host_metrics_hourly": "hour_start",
}
DAILY_MARTS = {
    "fct_telemetry_day": "day",
    "fct_minutes_per_user_daily": "day",
    "fct_channel_reliability_daily": "day",
    "fct_reliability_daily": "day",
    "fct_event_counts_daily": "day",
    "fct_host_metrics_daily": "day",
}
WEEKLY_MARTS = {
    "fct_telemetry_week": "week_start",
    "fct_minutes_per_user_weekly": "week_start",
    "fct_channel_reliability_weekly": "week_start",
    "fct_reliability_weekly": "week_start",
    "fct_host_metrics_weekly": "week_start",
}


def snapshot(warehouse: DbtWarehouse, marts: dict[str, str]) -> dict[str, list[tuple[object, ...]]]:
    """Every row of each mart as text, sorted, so that any change of any value shows."""
    return {table: warehouse.rows(f"select t::text from marts.{table} as t order by 1") for table in marts}


@pytest.mark.slow
def test_rebuilding_windows_gives_identical_rows(warehouse: DbtWarehouse) -> None:
    everything = {**HOURLY_MARTS, **DAILY_MARTS, **WEEKLY_MARTS}
    before = snapshot(warehouse, everything)
    assert all(before.values()), "the scenario gives every mart rows"
    week_start = dt.datetime.combine(WEEK_START, dt.time(), tzinfo=dt.UTC)
    for attempt in range(2):
        warehouse.build("tag:daily", DAY_START, DAY_START + dt.timedelta(days=1), name=f"daily-{attempt}")
        warehouse.build(
            "tag:weekly",
            week_start,
            week_start + dt.timedelta(days=7),
            name=f"weekly-{attempt}",
            data_tests=False,
        )
        warehouse.build(
            "tag:hourly",
            DAY_START + dt.timedelta(hours=10),
            DAY_START + dt.timedelta(hours=11),
            name=f"hourly-{attempt}",
            data_tests=False,
        )
        assert snapshot(warehouse, everything) == before


@pytest.mark.slow
def test_building_hour_by_hour_equals_one_run(warehouse: DbtWarehouse) -> None:
    """Hours 08:00-13:00 of DAY hold all of DAY's hourly rows (checked), so building them one
    hour at a time stands for building the day hour by hour (each dbt invocation with new vars
    reparses the project, about 1.5 s, so the test does not pay for 19 empty hours)."""
    first, last = DAY_START + dt.timedelta(hours=8), DAY_START + dt.timedelta(hours=13)
    full_refresh = snapshot(warehouse, HOURLY_MARTS)
    for table, column in HOURLY_MARTS.items():
        hours = warehouse.rows(
            f"select distinct {column} from marts.{table} where {column} >= %s and {column} < %s",
            (DAY_START, DAY_START + dt.timedelta(days=1)),
        )
        assert hours and all(first <= hour < last for (hour,) in hours), table

    def clear() -> None:
        for table, column in HOURLY_MARTS.items():
            warehouse.rows(
                f"delete from marts.{table} where {column} >= %s and {column} < %s returning 1",
                (first, last),
            )

    clear()
    assert snapshot(warehouse, HOURLY_MARTS) != full_refresh
    start = first
    while start < last:
        warehouse.build("tag:hourly", start, start + dt.timedelta(hours=1), name=f"hour-{start:%H}", data_tests=False)
        start += dt.timedelta(hours=1)
    assert snapshot(warehouse, HOURLY_MARTS) == full_refresh

    clear()
    warehouse.build("tag:hourly", DAY_START, DAY_START + dt.timedelta(days=1), name="whole-day")
    assert snapshot(warehouse, HOURLY_MARTS) == full_refresh


def test_a_window_rebuilds_only_its_periods(warehouse: DbtWarehouse) -> None:
    """Rows outside the window are left alone, even when they no longer match the raw data."""
    before = warehouse.rows("select day, minutes_total from marts.fct_telemetry_day order by day")
    next_day = DAY + dt.timedelta(days=1)
    warehouse.rows("update marts.fct_telemetry_day set minutes_total = -1 where day = %s returning 1", (next_day,))
    warehouse.build("fct_telemetry_day", DAY_START, DAY_START + dt.timedelta(days=1), name="one-day", data_tests=False)
    during = dict(warehouse.rows("select day, minutes_total from marts.fct_telemetry_day"))
    assert during[next_day] == -1
    assert during[DAY] == dict(before)[DAY]
    next_start = DAY_START + dt.timedelta(days=1)
    warehouse.build(
        "fct_telemetry_day", next_start, next_start + dt.timedelta(days=1), name="next-day", data_tests=False
    )
    assert warehouse.rows("select day, minutes_total from marts.fct_telemetry_day order by day") == before
