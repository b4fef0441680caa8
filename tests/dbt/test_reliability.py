"""Reliability marts built by dbt from scenario.SAMPLES (worked out in scenario.py's comments)."""

from __future__ import annotations

from decimal import Decimal

from tests.dbt.conftest import DbtWarehouse
from tests.dbt.raw_rows import DAY, WEEK_START, at
from tests.dbt.scenario import HOUR, NEXT_DAY, PREVIOUS_DAY


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


def test_the_look_back_reaches_a_receiver_heard_the_evening_before(warehouse: DbtWarehouse) -> None:
    """r1 reported c1 at 23:00 the day before (d0), inside the 7-day look-back of every hour of DAY.
    It counts for 08:00 (heard again at 09:30, inside that window's hour after) and 09:00 (heard at
    10:05), where it got its one message p1, and for 00:00 of the next day (d2 at 01:00); nobody
    else was heard before those windows. Every other window but HOUR counts no receiver."""
    counted = warehouse.rows(
        """
        select hour_start, channel_id, messages, receivers, total, delivered, reliability, samples, receivers_seen,
               status_compat_reliability
        from marts.fct_channel_reliability_hourly where hour_start <> %s and receivers > 0 order by 1, 2
        """,
        (HOUR,),
    )
    # 09:00: p1..p4 were sent, by r1..r4; only r1 counts. Compat: r1, r2 and r3 were heard after
    # 10:00 (r4 not until 11:20, outside [09:00, 11:00)), one sample each: 1 - 0/3.
    assert counted == [
        (at(DAY, "08:00"), "c1", 0, 1, 0, 0, None, 0, 0, None),
        (at(DAY, "09:00"), "c1", 1, 1, 1, 1, Decimal(1), 4, 4, Decimal(1)),
        (at(NEXT_DAY, "00:00"), "c1", 0, 1, 0, 0, None, 0, 0, None),
    ]
    others = warehouse.rows(
        "select hour_start, total, reliability from marts.fct_channel_reliability_hourly"
        " where hour_start <> %s and receivers = 0",
        (HOUR,),
    )
    assert others  # the hours around the window had samples
    assert all(total == 0 and reliability is None for _, total, reliability in others)
    overall = warehouse.rows(
        "select hour_start, channels_measured, reliability from marts.fct_reliability_hourly"
        " where hour_start <> %s and channels > 0 order by 1",
        (HOUR,),
    )
    assert [row for row in overall if row[2] is not None] == [(at(DAY, "09:00"), 1, Decimal(1))]


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
