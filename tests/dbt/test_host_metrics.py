"""Host metrics built by dbt from scenario.HOST_MINUTES: exact aggregates, quantiles within 0.5 %."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.dbt.conftest import DbtWarehouse
from tests.dbt.raw_rows import DAY, WEEK_START
from tests.dbt.scenario import HOUR

RELATIVE_ACCURACY = 0.005


def exact_quantile(values: list[float], q: float) -> float:
    """The value of rank max(1, ceil(q * n)) in ascending order (the documented rank rule)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def host_row(warehouse: DbtWarehouse, table: str, period_column: str, period: object, host: str) -> dict[str, Any]:
    with_names = warehouse.rows(
        f"select to_jsonb(t) from marts.{table} as t where {period_column} = %s and host_id = %s",
        (period, host),
    )
    assert len(with_names) == 1
    return with_names[0][0]


def assert_quantiles(row: dict[str, Any], metric: str, values: list[float]) -> None:
    assert row[f"{metric}_count"] == len(values)
    assert row[f"{metric}_min"] == min(values)
    assert row[f"{metric}_max"] == max(values)
    assert row[f"{metric}_avg"] == pytest.approx(sum(values) / len(values), rel=1e-12)
    for q in (0.5, 0.95, 0.99):
        exact = exact_quantile(values, q)
        estimate = row[f"{metric}_p{round(q * 100)}"]
        if exact == 0:
            assert estimate == 0
        else:
            assert abs(estimate - exact) / exact <= RELATIVE_ACCURACY, (metric, q, estimate, exact)


PING_HOUR = [20.0, 40.0, 60.0, 80.0, 250.0, 0.0, *[30.0] * 9]


def test_hourly_host_metrics(warehouse: DbtWarehouse) -> None:
    row = host_row(warehouse, "fct_host_metrics_hourly", "hour_start", HOUR, "h1")
    assert {k: row[k] for k in ("minutes_observed", "cpu_percent_avg", "cpu_percent_min", "cpu_percent_max")} == {
        "minutes_observed": 2,
        "cpu_percent_avg": 73.5,
        "cpu_percent_min": 50.0,
        "cpu_percent_max": 97.0,
    }
    assert (row["memory_percent_avg"], row["tick_rate_min"], row["players_avg"]) == (85.0, 54.0, 15.0)
    assert_quantiles(row, "player_ping_ms", PING_HOUR)
    assert_quantiles(row, "tick_duration_ms", [16.0, 16.0, 17.0, 18.0])
    assert_quantiles(row, "packet_latency_ms", [5.0])  # a histogram with one sample
    breaches = {k: v for k, v in row.items() if k.endswith("_minutes") and k != "minutes_observed"}
    assert breaches == {
        "cpu_warning_minutes": 1,  # 97
        "cpu_critical_minutes": 1,
        "memory_warning_minutes": 1,  # 90
        "memory_critical_minutes": 0,
        "tick_rate_warning_minutes": 1,  # 54
        "tick_rate_critical_minutes": 1,
        "ping_p95_warning_minutes": 1,  # minute 10:00: p95 = 250 ms; minute 10:01: 30 ms
        "ping_p95_critical_minutes": 1,
        "packet_loss_warning_minutes": 1,  # 6 %
        "packet_loss_critical_minutes": 1,
    }


def test_plain_host_without_server_fields(warehouse: DbtWarehouse) -> None:
    row = host_row(warehouse, "fct_host_metrics_hourly", "hour_start", HOUR.replace(hour=11), "h2")
    assert row["player_ping_ms_count"] == 0 and row["player_ping_ms_p95"] is None
    assert row["tick_rate_avg"] is None and row["tick_rate_warning_minutes"] == 0
    assert (row["cpu_warning_minutes"], row["cpu_critical_minutes"]) == (1, 0)
    assert (row["memory_warning_minutes"], row["memory_critical_minutes"]) == (1, 1)


def test_daily_and_weekly_merge_histograms_instead_of_averaging_percentiles(warehouse: DbtWarehouse) -> None:
    daily = host_row(warehouse, "fct_host_metrics_daily", "day", DAY, "h1")
    assert_quantiles(daily, "player_ping_ms", PING_HOUR)
    weekly = host_row(warehouse, "fct_host_metrics_weekly", "week_start", WEEK_START, "h1")
    assert weekly["minutes_observed"] == 3
    assert_quantiles(weekly, "player_ping_ms", [*PING_HOUR, 150.0])
    # the next day's minute has ping p95 = 150 ms: a warning, not a critical breach
    assert (weekly["ping_p95_warning_minutes"], weekly["ping_p95_critical_minutes"]) == (2, 1)
