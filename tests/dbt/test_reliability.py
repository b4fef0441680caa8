"""Reliability marts built by dbt from scenario.SAMPLES (worked out in scenario.py's comments)."""

from __future__ import annotations

from decimal import Decimal

from tests.dbt.conftest import DbtWarehouse
from tests.dbt.raw_rows import DAY, WEEK_START
from tests.dbt.scenario import HOUR, PREVIOUS_DAY


def test_hourly_channel_reliability(warehouse: DbtWarehouse) -> None:
    rows = warehouse.rows(
        """
        select channel_id, messages, receivers, total, delivered, missing, round(reliability, 12), samples,
               receivers_seen, status_compat_reliability
        from marts.fct_channel_reliability_hourly where hour_start = %s order by channel_id
        """,
        (HOUR,),
    )
    # c1: M = {m1, m2, m3}, R = {r1, r2, r4} (r3 went silent), delivered r1: 3, r2: 1, r4: 0
    # compat: receivers heard after 11:00 with samples in the window: r1 (3), r2 (1) -> 1 - 2/4
    assert rows == [
        ("c1", 3, 3, 9, 4, 5, round(Decimal(4) / 9, 12), 6, 3, Decimal("0.5")),
        ("c2", 1, 1, 1, 1, 0, Decimal(1), 1, 1, Decimal(1)),
    ]


def test_hourly_overall_reliability_is_the_mean_of_channels(warehouse: DbtWarehouse) -> None:
    rows = warehouse.rows(
        """
        select channels, channels_measured, messages, total, missing, round(reliability, 12),
               status_compat_reliability
        from marts.fct_reliability_hourly where hour_start = %s
        """,
        (HOUR,),
    )
    assert rows == [(2, 2, 4, 10, 5, round((Decimal(4) / 9 + 1) / 2, 12), Decimal("0.75"))]


def test_windows_without_counted_receivers_have_no_reliability(warehouse: DbtWarehouse) -> None:
    rows = warehouse.rows(
        "select hour_start, channel_id, receivers, total, reliability "
        "from marts.fct_channel_reliability_hourly where hour_start <> %s order by 1, 2",
        (HOUR,),
    )
    assert rows  # the hours around the window had samples
    assert all(receivers == 0 and total == 0 and reliability is None for _, _, receivers, total, reliability in rows)
    overall = warehouse.rows("select reliability from marts.fct_reliability_hourly where hour_start <> %s", (HOUR,))
    assert overall and all(r == (None,) for r in overall)


def test_daily_reliability_counts_receivers_heard_on_the_days_around(warehouse: DbtWarehouse) -> None:
    rows = warehouse.rows(
        """
        select day, channel_id, messages, receivers, total, missing, reliability
        from marts.fct_channel_reliability_daily order by 1, 2
        """
    )
    # only r1 reported c1 the day before and the day after; it got its 5 samples of c1 on DAY
    assert (DAY, "c1", 5, 1, 5, 0, Decimal(1)) in rows
    assert (DAY, "c2", 0, 0, 0, 0, None) in rows
    assert (PREVIOUS_DAY, "c1", 0, 0, 0, 0, None) in rows
    weekly = warehouse.rows("select week_start, receivers from marts.fct_channel_reliability_weekly")
    assert set(weekly) == {(WEEK_START, 0)}
