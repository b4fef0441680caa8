"""The funnel options on the shipped seed funnel purchase_focused, hand-worked from raw events to the marts.

purchase_focused walks the purchase funnel's events (store_opened, item_viewed, checkout_started,
purchase_completed) within 60 minutes, with item_viewed at least 20 s after store_opened, checkout_started at
most 120 s after item_viewed, an exclusion of app settings_opened between step 1 and step 4, and a breakdown by
the entry's payload key `platform` (docs/DESIGN.md item 4). The purchase funnel sees the same events without
options, which shows what each option changed.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import psycopg

from collectors.orchestration import dbt_runner as dbt
from tests.dbt.raw_rows import at, ensure_partitions

DAY = dt.date(2026, 11, 3)  # Tuesday of the week of 2026-11-02
WEEK = dt.date(2026, 11, 2)
OPENED, VIEWED, CHECKOUT, PAID = "store_opened", "item_viewed", "checkout_started", "purchase_completed"
SETTINGS = ("app", "settings_opened")
# (event_id, user_id, (channel, event), timestamp, payload)
EVENTS = [
    # u1: the view 10 s after the entry is too soon (20 s minimum), the one exactly 20 s after counts; the checkout
    # exactly 120 s after that view is on the maximum and counts: converted (pc)
    ("a1", "u1", ("store", OPENED), at(DAY, "10:00"), {"platform": "pc"}),
    ("b1", "u1", ("store", VIEWED), at(DAY, "10:00", 10), {}),
    ("b2", "u1", ("store", VIEWED), at(DAY, "10:00", 20), {}),
    ("c1", "u1", ("store", CHECKOUT), at(DAY, "10:02", 20), {}),
    ("d1", "u1", ("store", PAID), at(DAY, "10:03"), {}),
    # u2: the checkout 121 s after the view is too late: depth 2 (mac); purchase converts
    ("a2", "u2", ("store", OPENED), at(DAY, "11:00"), {"platform": "mac"}),
    ("b3", "u2", ("store", VIEWED), at(DAY, "11:01"), {}),
    ("c2", "u2", ("store", CHECKOUT), at(DAY, "11:03", 1), {}),
    ("d2", "u2", ("store", PAID), at(DAY, "11:04"), {}),
    # u3: settings opened between the entry and the purchase: the only attempt is excluded, u3 is not counted
    ("a3", "u3", ("store", OPENED), at(DAY, "12:00"), {}),
    ("b4", "u3", ("store", VIEWED), at(DAY, "12:01"), {}),
    ("s1", "u3", SETTINGS, at(DAY, "12:01", 30), {}),
    ("c3", "u3", ("store", CHECKOUT), at(DAY, "12:02"), {}),
    ("d3", "u3", ("store", PAID), at(DAY, "12:03"), {}),
    # u4: no purchase, so the first attempt's span ends with its window (14:00): settings at 13:59 exclude it; the
    # second attempt (linux) starts after them and is the one counted, under its own entry's platform
    ("a4", "u4", ("store", OPENED), at(DAY, "13:00"), {"platform": "pc"}),
    ("b5", "u4", ("store", VIEWED), at(DAY, "13:05"), {}),
    ("s2", "u4", SETTINGS, at(DAY, "13:59"), {}),
    ("a5", "u4", ("store", OPENED), at(DAY, "14:10"), {"platform": "linux"}),
    # u5: settings exactly at the window's end are not inside the span: counted (pc)
    ("a6", "u5", ("store", OPENED), at(DAY, "15:00"), {"platform": "pc"}),
    ("s3", "u5", SETTINGS, at(DAY, "16:00"), {}),
    # u6: the only attempt excluded (settings before the window's end, no purchase): not counted at all
    ("a7", "u6", ("store", OPENED), at(DAY, "16:00"), {"platform": "mac"}),
    ("s4", "u6", SETTINGS, at(DAY, "16:30"), {}),
    # u7: an entry whose platform is JSON null: (none)
    ("a8", "u7", ("store", OPENED), at(DAY, "17:00"), {"platform": None}),
    # the next day's event closes every window
    ("z1", "u9", ("app", "click"), at(DAY + dt.timedelta(days=1), "12:00"), {}),
]
# worked by hand: step -> (users, drop_off) of the day's (and the week's) overall row
FOCUSED = {1: (5, None), 2: (2, 3), 3: (1, 1), 4: (1, 0)}  # u1, u2, u4 (second attempt), u5, u7
PURCHASE = {1: (7, None), 2: (4, 3), 3: (3, 1), 4: (3, 0)}  # every user, u4 by its deeper first attempt
# breakdown value -> users at steps 1..4
BREAKDOWN = {"(none)": [1, 0, 0, 0], "linux": [1, 0, 0, 0], "mac": [1, 1, 0, 0], "pc": [2, 1, 1, 1]}
MARTS = "+fct_funnel_breakdown_daily +fct_funnel_breakdown_weekly"


def insert(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into raw.product_events (event_id, schema_version, channel, event, "timestamp", user_id, payload)
            values (%s, 'telemetry_event_v1', %s, %s, %s, %s, %s)
            """,
            [(e, kind[0], kind[1], ts, user, json.dumps(payload)) for e, user, kind, ts, payload in EVENTS],
        )


def test_limits_exclusions_and_breakdowns_are_hand_worked(warehouse_url: str, tmp_path: Path) -> None:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        ensure_partitions(conn, WEEK - dt.timedelta(days=1), WEEK + dt.timedelta(days=8))
        insert(conn)
    start = dt.datetime.combine(WEEK, dt.time(), tzinfo=dt.UTC)
    dbt.build(
        MARTS, start, start + dt.timedelta(days=7), database_url=warehouse_url, full_refresh=True, target_path=tmp_path
    )
    with psycopg.connect(warehouse_url) as conn:
        attempts = conn.execute(
            "select user_id, entry_event_id, depth, matched_event_ids, is_excluded, is_chosen, breakdown_value"
            " from intermediate.int_funnel_attempts where funnel = 'purchase_focused' order by entry_at, user_id"
        ).fetchall()
        assert attempts == [
            ("u1", "a1", 4, ["a1", "b2", "c1", "d1"], False, True, "pc"),
            ("u2", "a2", 2, ["a2", "b3"], False, True, "mac"),
            ("u3", "a3", 4, ["a3", "b4", "c3", "d3"], True, False, "(none)"),
            ("u4", "a4", 2, ["a4", "b5"], True, False, "pc"),
            ("u4", "a5", 1, ["a5"], False, True, "linux"),
            ("u5", "a6", 1, ["a6"], False, True, "pc"),
            ("u6", "a7", 1, ["a7"], True, False, "mac"),
            ("u7", "a8", 1, ["a8"], False, True, "(none)"),
        ]
        for grain, period, value in (("daily", "day", DAY), ("weekly", "week_start", WEEK)):
            overall = conn.execute(
                f"select funnel, step, users, drop_off from marts.fct_funnel_{grain} where {period} = %s"
                " order by funnel, step",
                (value,),
            ).fetchall()
            by_funnel: dict[str, dict[int, tuple[int, int | None]]] = {}
            for funnel, step, users, drop_off in overall:
                by_funnel.setdefault(funnel, {})[step] = (users, drop_off)
            assert by_funnel["purchase_focused"] == FOCUSED, grain
            assert by_funnel["purchase"] == PURCHASE, grain
            rows = conn.execute(
                f"select funnel, breakdown_value, step, users from marts.fct_funnel_breakdown_{grain}"
                f" where {period} = %s order by breakdown_value, step",
                (value,),
            ).fetchall()
            assert {funnel for funnel, *_ in rows} == {"purchase_focused"}, grain  # the only funnel with a breakdown
            broken_down: dict[str, list[int]] = {}
            for _, breakdown_value, _, users in rows:
                broken_down.setdefault(breakdown_value, []).append(users)
            assert broken_down == BREAKDOWN, grain
            # the breakdown rows sum to the overall row, step by step
            sums = [sum(users[step - 1] for users in broken_down.values()) for step in range(1, 5)]
            assert sums == [FOCUSED[step][0] for step in range(1, 5)], grain
