"""What the reconcile planner compares, read from the ledgers: arrivals from ``quality.ingest_batches``, successful
builds from ``quality.dbt_builds``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import psycopg

from collectors.config import Settings
from collectors.orchestration.build_ledger import whole_builds
from collectors.orchestration.cadences import CADENCES, Cadence
from collectors.orchestration.cleanup import FEEDS
from collectors.orchestration.reconcile import Arrival, Build, Plan, plan
from collectors.warehouse.db import connect

# One row per table and hour (or day, for batches older than the hours) with the latest batch that landed rows in
# it. Read by arrival time, which is indexed: rows for an hour cannot arrive before the hour, less the receiver's
# allowance for clocks ahead (max_future_seconds).
ARRIVALS = """
select b.source, hours.key, false, max(b.received_at)
from quality.ingest_batches as b
cross join lateral jsonb_each(b.accepted_by_hour) as hours (key, value)
where b.received_at >= %(since)s and b.accepted_by_hour is not null
group by 1, 2
union all
select b.source, days.key, true, max(b.received_at)
from quality.ingest_batches as b
cross join lateral jsonb_each(b.accepted_by_day) as days (key, value)
where b.received_at >= %(since)s and b.accepted_by_hour is null
group by 1, 2
"""


# Only builds of a whole part cover a window: a family rebuild left the other models as they were.
def earliest_start(now: dt.datetime, lookback: dt.timedelta, cadences: Iterable[Cadence]) -> dt.datetime:
    """The start of the earliest window of ``cadences`` the planner looks at."""
    return min(cadence.floor(now - lookback) for cadence in cadences)


def _fed() -> set[Cadence]:
    return {CADENCES[feed.cadence] for feeds in FEEDS.values() for feed in feeds}


def _arrival(table: str, key: str, whole_day: bool, received_at: dt.datetime) -> Arrival:
    if whole_day:
        start = dt.datetime.combine(dt.date.fromisoformat(key), dt.time(), tzinfo=dt.UTC)
        return Arrival(table, start, start + dt.timedelta(days=1), received_at)
    start = dt.datetime.fromisoformat(key).astimezone(dt.UTC)
    return Arrival(table, start, start + dt.timedelta(hours=1), received_at)


def read_ledgers(
    conn: psycopg.Connection, *, now: dt.datetime, lookback: dt.timedelta, max_future: dt.timedelta
) -> tuple[list[Arrival], list[Build]]:
    """The arrivals and builds that can bear on a window overlapping ``[now - lookback, now)``."""
    # rows of the window before the earliest can count for it too (a table that feeds its neighbours)
    since = min(c.shift(earliest_start(now, lookback, [c]), -1) for c in _fed())
    arrivals = [
        arrival
        for row in conn.execute(ARRIVALS, {"since": since - max_future})
        if (arrival := _arrival(*row)).end > since and arrival.start < now
    ]
    return arrivals, whole_builds(conn, since=earliest_start(now, lookback, CADENCES.values()))


def current_plan(database_url: str, settings: Settings, *, now: dt.datetime, lookback: dt.timedelta) -> Plan:
    """The plan from the warehouse's ledgers, with the settings' reliability lag and clock allowance."""
    with connect(database_url) as conn:
        arrivals, builds = read_ledgers(
            conn, now=now, lookback=lookback, max_future=dt.timedelta(seconds=settings.max_future_seconds)
        )
    lag = settings.reliability_lag_windows
    return plan(arrivals, builds, feeds=FEEDS, now=now, lookback=lookback, lag_windows=lag)
