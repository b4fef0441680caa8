"""Shares and conversions are stored exactly (never rounded in a mart) and step 1 converts 1.

Three users enter onboarding on one day and one of them completes the signup: every share below
is 1/3, which six decimals would have stored as 0.333333.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import psycopg

from collectors.orchestration import dbt_runner as dbt
from tests.dbt.raw_rows import at, ensure_partitions, insert_events

DAY = dt.date(2026, 11, 3)  # Tuesday of the week of 2026-11-02
WEEK, NEXT_WEEK = dt.date(2026, 11, 2), dt.date(2026, 11, 9)
EVENTS = [
    ("e1", "u1", "user", "signup_started", at(DAY, "10:00")),
    ("e2", "u1", "user", "signup_completed", at(DAY, "10:05")),
    ("e3", "u2", "user", "signup_started", at(DAY, "11:00")),
    ("e4", "u3", "user", "signup_started", at(DAY, "12:00")),
    # u1 comes back the next week; u4's first event ends that week for retention (the data's end)
    ("e5", "u1", "app", "open", at(NEXT_WEEK, "10:00")),
    ("e6", "u4", "app", "open", at(NEXT_WEEK + dt.timedelta(days=7), "00:00")),
]
THIRD = 1 / 3


def exactly_a_third(value: Decimal, sign: int = 1) -> bool:
    """More than six decimals, and the nearest double to 1/3 (or -1/3)."""
    return -value.as_tuple().exponent > 6 and float(value) == sign * THIRD


def test_shares_and_conversions_are_exact(warehouse_url: str, tmp_path: Path) -> None:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        ensure_partitions(conn, WEEK - dt.timedelta(days=1), NEXT_WEEK + dt.timedelta(days=8))
        insert_events(conn, EVENTS)
    start = dt.datetime.combine(WEEK, dt.time(), tzinfo=dt.UTC)
    dbt.build(
        "+fct_funnel_daily +fct_funnel_weekly +fct_retention_weekly_average +fct_feature_adoption_weekly",
        start,
        start + dt.timedelta(days=7),
        database_url=warehouse_url,
        full_refresh=True,
        target_path=tmp_path,
    )
    with psycopg.connect(warehouse_url) as conn:

        def rows(query: str, *params: object) -> list[tuple[object, ...]]:
            return conn.execute(query, params).fetchall()

        for table, period, value in (("fct_funnel_daily", "day", DAY), ("fct_funnel_weekly", "week_start", WEEK)):
            steps = rows(
                f"select step, users, conversion_from_start, conversion_from_previous from marts.{table}"
                f" where funnel = 'onboarding' and {period} = %s order by step",
                value,
            )
            assert [(step, users) for step, users, _, _ in steps] == [(1, 3), (2, 1), (3, 0), (4, 0)], table
            assert steps[0][2:] == (1, 1), table  # every entrant reached step 1
            assert exactly_a_third(steps[1][2]) and exactly_a_third(steps[1][3]), (table, steps[1])
            assert steps[2][3] == 0 and steps[3][3] is None, table  # 0 of 1; 0 of nobody is unknown

        ((exact, on_or_after),) = rows(
            "select retention_exact, retention_on_or_after from marts.fct_retention_weekly"
            " where cohort_week = %s and week_offset = 1",
            WEEK,
        )
        assert exactly_a_third(exact) and exactly_a_third(on_or_after)
        ((average,),) = rows("select retention_exact from marts.fct_retention_weekly_average where week_offset = 1")
        assert exactly_a_third(average)  # only the first cohort's cell has matured

        adoption = dict(
            ((week, event), (share, change))
            for week, event, share, change in rows(
                "select week_start, event, adoption_share, share_change from marts.fct_feature_adoption_weekly"
            )
        )
        assert exactly_a_third(adoption[(WEEK, "signup_completed")][0])
        share, change = adoption[(NEXT_WEEK, "signup_completed")]
        assert share == 0 and exactly_a_third(change, sign=-1)
