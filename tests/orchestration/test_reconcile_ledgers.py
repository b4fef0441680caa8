"""The reconcile planner's inputs read from the two ledgers of a real, migrated warehouse."""

from __future__ import annotations

import datetime as dt
import json

import psycopg

from collectors.orchestration.cadences import Window, parse_instant
from collectors.orchestration.cleanup import FEEDS
from collectors.orchestration.reconcile import Arrival, Build, plan
from collectors.orchestration.reconcile_ledgers import read_ledgers

NOW = parse_instant("2026-12-20T12:30:00Z")
WEEK = dt.timedelta(days=7)
FUTURE = dt.timedelta(minutes=5)


def at(text: str) -> dt.datetime:
    return parse_instant(text)


def batch(
    db: psycopg.Connection, source: str, received: str, by_day: dict[str, int], by_hour: dict[str, int] | None
) -> None:
    db.execute(
        "insert into quality.ingest_batches (batch_id, source, accepted, duplicates, rejected, accepted_by_day,"
        " accepted_by_hour, received_at) values (gen_random_uuid(), %s, %s, 0, 0, %s, %s, %s)",
        (
            source,
            sum(by_day.values()),
            json.dumps(by_day),
            None if by_hour is None else json.dumps(by_hour),
            at(received),
        ),
    )


def build(db: psycopg.Connection, cadence: str, part: str, window: Window, started: str | None, finished: str) -> None:
    db.execute(
        "insert into quality.dbt_builds (cadence, part, window_start, window_end, nodes, elapsed_seconds,"
        " started_at, finished_at) values (%s, %s, %s, %s, 1, 90, %s, %s)",
        (cadence, part, window.start, window.end, started and at(started), at(finished)),
    )


DAY = Window(at("2026-12-15T00:00:00Z"), at("2026-12-16T00:00:00Z"))
WEEK_BEFORE = Window(at("2026-12-07T00:00:00Z"), at("2026-12-14T00:00:00Z"))
NOVEMBER = Window(at("2026-11-01T00:00:00Z"), at("2026-12-01T00:00:00Z"))


def test_arrivals_come_per_hour_and_per_day_for_older_rows(db: psycopg.Connection) -> None:
    hours = {"2026-12-15T05:00:00+00:00": 3, "2026-12-15T06:00:00+00:00": 1}
    batch(db, "message_samples", "2026-12-16T00:00:00Z", {"2026-12-15": 4}, hours)
    batch(db, "message_samples", "2026-12-17T00:00:00Z", {"2026-12-15": 1}, {"2026-12-15T05:00:00+00:00": 1})
    batch(db, "host_minutes", "2026-12-14T00:00:00Z", {"2026-12-13": 2}, None)  # written before the hours
    batch(db, "host_minutes", "2026-11-01T00:00:00Z", {"2026-11-01": 2}, None)  # received long before the look-back
    batch(db, "product_events", "2026-12-19T00:00:00Z", {"2026-11-20": 2}, {"2026-11-20T10:00:00+00:00": 2})
    arrivals, _ = read_ledgers(db, now=NOW, lookback=WEEK, max_future=FUTURE)

    def arrival(table: str, start: str, hours: int, received: str) -> Arrival:
        return Arrival(table, at(start), at(start) + dt.timedelta(hours=hours), at(received))

    assert sorted(arrivals, key=lambda a: (a.table, a.start)) == [
        arrival("host_minutes", "2026-12-13T00:00:00Z", 24, "2026-12-14T00:00:00Z"),
        arrival("message_samples", "2026-12-15T05:00:00Z", 1, "2026-12-17T00:00:00Z"),  # the latest batch
        arrival("message_samples", "2026-12-15T06:00:00Z", 1, "2026-12-16T00:00:00Z"),
    ]  # the events of 2026-11-20 are older than any window raw feeds in the look-back, and the week before it


def test_builds_start_when_recorded_and_older_ones_at_their_end_less_their_time(db: psycopg.Connection) -> None:
    build(db, "daily", "marts", DAY, "2026-12-16T00:00:05Z", "2026-12-16T00:01:35Z")
    build(db, "weekly", "reliability", WEEK_BEFORE, None, "2026-12-21T00:01:30Z")
    # November ends where the earliest window the look-back reaches (December) starts
    build(db, "monthly", "marts", NOVEMBER, None, "2026-12-01T00:01:30Z")
    build(db, "daily", "marts", DAY, "2026-12-18T00:00:00Z", "2026-12-18T00:01:00Z")
    db.execute("update quality.dbt_builds set family = 'day_log' where started_at = '2026-12-18T00:00:00Z'")
    _, builds = read_ledgers(db, now=NOW, lookback=WEEK, max_future=FUTURE)
    assert sorted(builds, key=lambda b: b.window.start) == [
        Build("weekly", "reliability", WEEK_BEFORE, at("2026-12-21T00:00:00Z")),  # finished 90 s later
        Build("daily", "marts", DAY, at("2026-12-16T00:00:05Z")),
    ]  # and not the build of one family, which covers no window


def test_a_plan_from_the_ledgers(db: psycopg.Connection) -> None:
    for part in ("marts", "reliability"):
        build(db, "daily", part, DAY, "2026-12-16T00:00:05Z", "2026-12-16T00:01:35Z")
    batch(db, "message_samples", "2026-12-17T00:00:00Z", {"2026-12-15": 1}, {"2026-12-15T05:00:00+00:00": 1})
    lookback = dt.timedelta(days=5)
    arrivals, builds = read_ledgers(db, now=NOW, lookback=lookback, max_future=FUTURE)
    result = plan(arrivals, builds, feeds=FEEDS, now=NOW, lookback=lookback, lag_windows=1)
    day = next(p for p in result.due if p.cadence.name == "daily" and p.window == DAY)
    assert day.reason == (
        "late rows arrived 2026-12-17T00:00:00+00:00 after build 2026-12-16T00:00:05+00:00 (raw.message_samples)"
    )
    assert {p.reason for p in result.due if p != day} == {"never built"}
