"""The day log, its weekly rollup and minutes per user, built by dbt from scenario.SNAPSHOTS."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from tests.dbt.conftest import DbtWarehouse
from tests.dbt.raw_rows import DAY, WEEK_START
from tests.dbt.scenario import NEXT_DAY

ZEROS_22 = [0] * 22

SEGMENT_LIST, USER_MAP, NUMBER = "segment list", "user map", "number"

# The original Teiserver day-log document, transcribed key for key from its documentation
# ("Day by day"): its consumers read these keys, so day_log must have exactly these.
ORIGINAL_DAY_LOG = {
    "battles": {
        "in_progress": SEGMENT_LIST,
        "lobby": SEGMENT_LIST,
        "total": SEGMENT_LIST,
    },
    "aggregates": {
        "stats": {
            "accounts_created": NUMBER,
            "unique_users": NUMBER,
            "unique_players": NUMBER,
        },
        "minutes": {
            "player": NUMBER,
            "spectator": NUMBER,
            "lobby": NUMBER,
            "menu": NUMBER,
            "total": NUMBER,
        },
    },
    "user_counts": {
        "player": SEGMENT_LIST,
        "spectator": SEGMENT_LIST,
        "lobby": SEGMENT_LIST,
        "menu": SEGMENT_LIST,
        "total": SEGMENT_LIST,
    },
    "minutes_per_user": {
        "total": USER_MAP,
        "player": USER_MAP,
        "spectator": USER_MAP,
        "lobby": USER_MAP,
        "menu": USER_MAP,
    },
}


def contract_day_log() -> dict[str, Any]:
    """The original's shape plus what the contract adds: the day's peaks and the distinct battles
    (the original's to-do) in aggregates.stats, and the per-segment averages beside user_counts."""
    shape = copy.deepcopy(ORIGINAL_DAY_LOG)
    states = ("player", "spectator", "lobby", "menu", "total")
    shape["aggregates"]["stats"]["peak_user_counts"] = dict.fromkeys(states, NUMBER)
    shape["aggregates"]["stats"]["battles"] = NUMBER
    shape["average_user_counts"] = dict.fromkeys(states, SEGMENT_LIST)
    return shape


def key_tree(value: object, like: object = None) -> object:
    """The keys of a document at every level, with segment lists, user maps and numbers as leaves.

    `like` only says where a user map (user id -> minutes) may stand; anywhere else a mapping is
    walked into, so an extra or a missing key shows at any depth.
    """
    if isinstance(value, list):
        return SEGMENT_LIST
    if isinstance(value, dict):
        if like == USER_MAP and all(k.isdigit() and isinstance(v, int) for k, v in value.items()):
            return USER_MAP
        return {k: key_tree(v, like.get(k) if isinstance(like, dict) else None) for k, v in value.items()}
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return NUMBER
    return repr(value)


def day_row(warehouse: DbtWarehouse, day: object) -> dict[str, Any]:
    rows = warehouse.rows(
        """
        select day, segment_minutes, segment_count, minutes_observed, unique_users, unique_players,
               accounts_created, battles, minutes_player, minutes_spectator, minutes_lobby, minutes_menu,
               minutes_total, peak_player, peak_spectator, peak_lobby, peak_menu, peak_total, day_log,
               segment_peak_user_counts
        from marts.fct_telemetry_day where day = %s
        """,
        (day,),
    )
    assert len(rows) == 1
    names = [
        "day",
        "segment_minutes",
        "segment_count",
        "minutes_observed",
        "unique_users",
        "unique_players",
        "accounts_created",
        "battles",
        "minutes_player",
        "minutes_spectator",
        "minutes_lobby",
        "minutes_menu",
        "minutes_total",
        "peak_player",
        "peak_spectator",
        "peak_lobby",
        "peak_menu",
        "peak_total",
        "day_log",
        "segment_peak_user_counts",
    ]
    return dict(zip(names, rows[0], strict=True))


def test_day_log_segments_follow_the_minutes_present(warehouse: DbtWarehouse) -> None:
    # Segment 0 has minutes 00:00 (two servers), 00:01 and 00:03 (00:02 missing): n = 3.
    # Segment 1 has 01:10 only; segments 2..23 are empty.
    row = day_row(warehouse, DAY)
    log = row["day_log"]
    third = Decimal(1) / 3
    assert [Decimal(str(v)) for v in log["battles"]["total"][:2]] == [Decimal("1.3333333333333333"), 1]
    assert abs(Decimal(str(log["battles"]["lobby"][0])) - third) < Decimal("1e-15")
    assert log["battles"]["in_progress"] == [1, 1, *ZEROS_22]
    assert log["user_counts"] == {
        "player": [4, 1, *ZEROS_22],
        "spectator": [1, 1, *ZEROS_22],
        "lobby": [1, 0, *ZEROS_22],
        "menu": [3, 0, *ZEROS_22],
        "total": [9, 1, *ZEROS_22],
    }
    assert log["average_user_counts"]["total"] == [3, 1, *ZEROS_22]
    assert log["average_user_counts"]["menu"] == [1, 0, *ZEROS_22]
    assert row["segment_peak_user_counts"] == {
        "player": [3, 1, *ZEROS_22],
        "spectator": [1, 1, *ZEROS_22],
        "lobby": [1, 0, *ZEROS_22],
        "menu": [2, 0, *ZEROS_22],
        "total": [6, 1, *ZEROS_22],
    }


def test_day_log_aggregates_and_minutes_per_user(warehouse: DbtWarehouse) -> None:
    row = day_row(warehouse, DAY)
    log = row["day_log"]
    assert log["aggregates"] == {
        "stats": {
            "accounts_created": 2,
            "unique_users": 7,
            "unique_players": 3,
            "peak_user_counts": {"player": 3, "spectator": 1, "lobby": 1, "menu": 2, "total": 6},
            "battles": 3,
        },
        "minutes": {"player": 5, "spectator": 2, "lobby": 1, "menu": 3, "total": 10},
    }
    # user 1 is on servers A and B at 00:00: 2 in user counts, 1 in their own minutes
    assert log["minutes_per_user"] == {
        "total": {"1": 2, "2": 2, "3": 1, "4": 1, "5": 1, "6": 1, "7": 1},
        "player": {"1": 2, "2": 1, "7": 1},
        "spectator": {"3": 1, "7": 1},
        "lobby": {"2": 1},
        "menu": {"4": 1, "5": 1, "6": 1},
    }
    scalars = {k: v for k, v in row.items() if k not in ("day_log", "segment_peak_user_counts")}
    assert scalars == {
        "day": DAY,
        "segment_minutes": 60,
        "segment_count": 24,
        "minutes_observed": 4,
        "unique_users": 7,
        "unique_players": 3,
        "accounts_created": 2,
        "battles": 3,
        "minutes_player": 5,
        "minutes_spectator": 2,
        "minutes_lobby": 1,
        "minutes_menu": 3,
        "minutes_total": 10,
        "peak_player": 3,
        "peak_spectator": 1,
        "peak_lobby": 1,
        "peak_menu": 2,
        "peak_total": 6,
    }


def test_minutes_per_user_daily_matches_the_day_log(warehouse: DbtWarehouse) -> None:
    rows = warehouse.rows(
        "select user_id, state, minutes from marts.fct_minutes_per_user_daily where day = %s order by 1, 2",
        (DAY,),
    )
    from_table: dict[str, dict[str, int]] = {}
    for user_id, state, minutes in rows:
        from_table.setdefault(state, {})[str(user_id)] = minutes
    assert from_table == day_row(warehouse, DAY)["day_log"]["minutes_per_user"]
    assert ("1", 2) in {(str(u), m) for u, s, m in rows if s == "player"}


def test_week_rollup_counts_unique_users_over_the_week(warehouse: DbtWarehouse) -> None:
    rows = warehouse.rows(
        """
        select week_start, days_observed, minutes_observed, unique_users, unique_players, accounts_created,
               battles, minutes_total, minutes_player, minutes_menu, peak_total
        from marts.fct_telemetry_week
        """
    )
    # day 1: users 1..7, day 2: users 1 and 8 -> 8 distinct (a sum of daily counts would be 9)
    assert rows == [(WEEK_START, 2, 5, 8, 3, 3, 3, 12, 6, 4, 6)]
    assert day_row(warehouse, NEXT_DAY)["unique_users"] == 2


def test_minutes_per_user_weekly(warehouse: DbtWarehouse) -> None:
    rows = warehouse.rows(
        "select state, minutes from marts.fct_minutes_per_user_weekly where week_start = %s and user_id = 1",
        (WEEK_START,),
    )
    assert sorted(rows) == [("player", 3), ("total", 3)]


def test_event_counts_daily(warehouse: DbtWarehouse) -> None:
    rows = warehouse.rows("select day, channel, event, events, users from marts.fct_event_counts_daily order by 1, 2")
    assert rows == [(DAY, "user", "login", 3, 2), (NEXT_DAY, "app", "open", 1, 1)]


def test_day_log_has_the_original_documents_key_tree(warehouse: DbtWarehouse) -> None:
    expected = contract_day_log()
    logs = warehouse.rows("select day, day_log from marts.fct_telemetry_day order by day")
    assert [day for day, _ in logs] == [DAY, NEXT_DAY]
    for day, log in logs:
        assert key_tree(log, expected) == expected, day
    # the per-segment peaks left the document for a column of their own
    assert key_tree(day_row(warehouse, DAY)["segment_peak_user_counts"]) == dict.fromkeys(
        ("player", "spectator", "lobby", "menu", "total"), SEGMENT_LIST
    )
