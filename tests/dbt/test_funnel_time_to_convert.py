"""Time to convert: each step's buckets, and that they hold exactly the users the funnel marts count."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg

from collectors.orchestration import dbt_runner as dbt
from tests.dbt.raw_rows import at, ensure_partitions, insert_events

DAY = dt.date(2026, 11, 3)  # Tuesday of the week of 2026-11-02
WEEK = dt.date(2026, 11, 2)
EVENTS = [
    # u1 walks the whole onboarding funnel: 30 s, 20 min and 59 min after the entry
    ("e1", "u1", "user", "signup_started", at(DAY, "10:00")),
    ("e2", "u1", "user", "signup_completed", at(DAY, "10:00", 30)),
    ("e3", "u1", "app", "tutorial_completed", at(DAY, "10:20")),
    ("e4", "u1", "game", "first_battle", at(DAY, "10:59")),
    # u2 completes the signup exactly 5 minutes after starting it (the 5-15 min bucket's lower bound)
    ("e5", "u2", "user", "signup_started", at(DAY, "11:00")),
    ("e6", "u2", "user", "signup_completed", at(DAY, "11:05")),
    ("e7", "u3", "user", "signup_started", at(DAY, "12:00")),
]
# worked by hand: (step, bucket, users); both the day and its week hold the same three users
EXPECTED = [
    (1, "<1 min", 3),
    (2, "<1 min", 1),
    (2, "5-15 min", 1),
    (3, "15-60 min", 1),
    (4, "15-60 min", 1),
]
SUMS = """
select funnel_mart.step, funnel_mart.users, coalesce(buckets.users, 0)
from marts.fct_funnel_{grain} as funnel_mart
full join (
    select {period}, funnel, step, sum(users)::bigint as users
    from marts.fct_funnel_time_to_convert_{grain}
    group by {period}, funnel, step
) as buckets using ({period}, funnel, step)
order by 1
"""


def test_buckets_are_hand_worked_and_sum_to_the_steps_users(warehouse_url: str, tmp_path: Path) -> None:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        ensure_partitions(conn, WEEK - dt.timedelta(days=1), WEEK + dt.timedelta(days=8))
        insert_events(conn, EVENTS)
    start = dt.datetime.combine(WEEK, dt.time(), tzinfo=dt.UTC)
    dbt.build(
        "+fct_funnel_daily +fct_funnel_weekly +fct_funnel_time_to_convert_daily +fct_funnel_time_to_convert_weekly",
        start,
        start + dt.timedelta(days=7),
        database_url=warehouse_url,
        full_refresh=True,
        target_path=tmp_path,
    )
    with psycopg.connect(warehouse_url) as conn:
        for grain, period, value in (("daily", "day", DAY), ("weekly", "week_start", WEEK)):
            buckets = conn.execute(
                f"select step, bucket, users from marts.fct_funnel_time_to_convert_{grain}"
                f" where funnel = 'onboarding' and {period} = %s order by step, bucket_order",
                (value,),
            ).fetchall()
            assert buckets == EXPECTED, grain
            sums = conn.execute(SUMS.format(grain=grain, period=period)).fetchall()
            assert sums and all(users == bucketed for _, users, bucketed in sums), (grain, sums)
