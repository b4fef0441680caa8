"""Funnel and session benchmark: the daily product build against hand-written SQL.

``run(server_url)`` creates and drops its own database and fills ``raw.product_events`` for one UTC day
with ``generate_series`` (about 1 M events: 20,000 users, five bursts of ten events each, the bursts 90
minutes apart; each burst walks the purchase or the onboarding funnel and drops off with probability 0.3
before each next step, the rest is noise). Figures, measured in the same run:

* ``funnel.vs_handsql``: one windowed ``dbt build`` of ``fct_sessions int_funnel_attempts fct_funnel_daily``
  for the day (models and their data tests; the tables exist, as on any day but the first) divided by
  hand-written SQL producing the same results: the day's sessions as a table and the daily funnel rows
  (checked equal to the marts' rows of the funnels without options, onboarding and purchase);
* ``funnel.models_only_vs_handsql``: the same without the data tests;
* ``funnel.vs_duckdb``: the models' wall time in that build without tests (run_results: first model start
  to last model end, dbt's two threads; dbt's start-up and parsing left out) divided by DuckDB computing
  the same sessions, attempts and daily funnels from the same events with the same rules
  (``tests/bench/duckdb_funnel.py``; the export is not timed), checked equal row for row, every seed funnel
  (purchase_focused's limits, exclusion and breakdown too): the bench fails if any row differs.
  ``sessions.vs_duckdb`` and ``funnel.attempts_and_daily_vs_duckdb`` split it by part (each model's own
  seconds, which overlap in the build, ÷ DuckDB's part);
* ``funnel.growth_3m_vs_1m``: the same models' wall time over 60,000 users (3 M events) ÷ over 1 M;
* the seconds and the number of events, sessions and attempts behind them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import psycopg

from collectors.dev import local_postgres
from collectors.warehouse.migrate import upgrade
from tests.bench import duckdb_funnel

try:
    from collectors.orchestration import dbt_runner as dbt
except ImportError:  # run as `python -m tests.bench`: plugins/ is not on sys.path (pytest adds it)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))
    from collectors.orchestration import dbt_runner as dbt

UTC = dt.UTC
DAY = dt.date(2026, 11, 4)
USERS = 20_000
BURSTS = 5
EVENTS_PER_BURST = 10
MODELS = "fct_sessions int_funnel_attempts fct_funnel_daily"


def _ts(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=UTC)


LOAD_SQL = """
insert into raw.product_events (event_id, schema_version, channel, event, "timestamp", user_id)
with bursts as (
    select u, b, random() as luck, b %% 2 = 0 as purchase
    from generate_series(1, %(users)s) as u
    cross join generate_series(0, %(bursts)s - 1) as b
)
select
    'ev-' || u || '-' || b || '-' || k,
    'telemetry_event_v1',
    case
        when k < depth then (case when purchase then array['store', 'store', 'store', 'store']
                                  else array['user', 'user', 'app', 'game'] end)[k + 1]
        else 'app'
    end,
    case
        when k < depth then (case when purchase
                                  then array['store_opened', 'item_viewed', 'checkout_started', 'purchase_completed']
                                  else array['signup_started', 'signup_completed', 'tutorial_completed',
                                             'first_battle'] end)[k + 1]
        else (array['click', 'page_view', 'settings_opened'])[1 + (u + k) %% 3]
    end,
    %(day)s::timestamptz + ((u * 7919) %% 36000) * interval '1 second'
        + b * interval '90 minutes' + k * interval '2 minutes' + ((u + k) %% 60) * interval '1 second',
    'user-' || u
from bursts
cross join lateral (
    select case when luck < 0.343 then 4 when luck < 0.49 then 3 when luck < 0.7 then 2 else 1 end as depth
) as walked
cross join generate_series(0, %(per_burst)s - 1) as k
"""

# The same results by hand: sessions by the 30-minute rule (no user is active for 24 hours here, which
# the check below confirms through the equal results), funnels by one greedy pass per step (no funnel
# repeats an event kind, so "not already used" needs no test).
HAND_SESSIONS_SQL = """
create temp table hand_sessions as
with ordered as (
    select user_id, "timestamp" as ts, event_id,
           case when lag("timestamp") over w is null
                  or "timestamp" - lag("timestamp") over w > interval '30 minutes' then 1 else 0 end as starts
    from raw.product_events
    where "timestamp" >= %(start)s - interval '1 day' and "timestamp" < %(end)s + interval '1 day'
    window w as (partition by user_id order by "timestamp", event_id)
),
numbered as (
    select *, sum(starts) over (partition by user_id order by ts, event_id) as n from ordered
)
select user_id, min(ts) as session_start, max(ts) as session_end, count(*) as events
from numbered
group by user_id, n
having min(ts) >= %(start)s and min(ts) < %(end)s
"""

# the funnels the hand-written SQL declares: those without options (limits, exclusions, breakdowns); the
# DuckDB comparison checks every seed funnel, purchase_focused's options included
HAND_FUNNELS = ("onboarding", "purchase")
HAND_FUNNEL_SQL = """
with steps as (
    select * from (values
        ('onboarding', 1, 'user', 'signup_started'), ('onboarding', 2, 'user', 'signup_completed'),
        ('onboarding', 3, 'app', 'tutorial_completed'), ('onboarding', 4, 'game', 'first_battle'),
        ('purchase', 1, 'store', 'store_opened'), ('purchase', 2, 'store', 'item_viewed'),
        ('purchase', 3, 'store', 'checkout_started'), ('purchase', 4, 'store', 'purchase_completed')
    ) as s (funnel, step, channel, event)
),
candidates as (
    select steps.funnel, steps.step, e.user_id, e."timestamp" as ts
    from raw.product_events as e
    join steps on steps.channel = e.channel and steps.event = e.event
    where e."timestamp" >= %(start)s and e."timestamp" < %(end)s + interval '1 hour'
),
s1 as (select funnel, user_id, ts as entry_at, ts as t1 from candidates
       where step = 1 and ts >= %(start)s and ts < %(end)s),
s2 as (
    select a.funnel, a.user_id, a.entry_at, min(c.ts) as t2
    from s1 as a
    left join candidates as c on c.funnel = a.funnel and c.user_id = a.user_id and c.step = 2
        and c.ts >= a.t1 and c.ts <= a.entry_at + interval '1 hour'
    group by 1, 2, 3
),
s3 as (
    select a.funnel, a.user_id, a.entry_at, a.t2, min(c.ts) as t3
    from s2 as a
    left join candidates as c on c.funnel = a.funnel and c.user_id = a.user_id and c.step = 3
        and c.ts >= a.t2 and c.ts <= a.entry_at + interval '1 hour'
    group by 1, 2, 3, 4
),
s4 as (
    select a.funnel, a.user_id, a.entry_at, a.t2, a.t3, min(c.ts) as t4
    from s3 as a
    left join candidates as c on c.funnel = a.funnel and c.user_id = a.user_id and c.step = 4
        and c.ts >= a.t3 and c.ts <= a.entry_at + interval '1 hour'
    group by 1, 2, 3, 4, 5
),
chosen as (
    select distinct on (funnel, user_id) funnel, user_id,
           1 + (t2 is not null)::int + (t3 is not null)::int + (t4 is not null)::int as depth
    from s4
    order by funnel, user_id, (t2 is not null)::int + (t3 is not null)::int + (t4 is not null)::int desc, entry_at
),
per_step as (
    select chosen.funnel, steps.step, count(*) filter (where chosen.depth >= steps.step) as users
    from chosen join steps on steps.funnel = chosen.funnel
    group by 1, 2
)
select funnel, step, users,
       case
           when step = 1 then 1
           else trim_scale(users::numeric / nullif(lag(users) over (partition by funnel order by step), 0))
       end
from per_step
order by 1, 2
"""


def _hand(url: str, start: dt.datetime, end: dt.datetime) -> tuple[float, list[tuple[object, ...]], tuple]:
    params = {"start": start, "end": end}
    with psycopg.connect(url) as conn:
        began = time.perf_counter()
        # the planner settings of the dbt models (macros/product.sql, product_planner_settings)
        for setting in ("jit", "enable_nestloop", "enable_mergejoin"):
            conn.execute(f"set local {setting} = off")
        conn.execute(HAND_SESSIONS_SQL, params)
        funnel = conn.execute(HAND_FUNNEL_SQL, params).fetchall()
        seconds = time.perf_counter() - began
        sessions = conn.execute(
            "select count(*), sum(events), sum(extract(epoch from session_end - session_start)) from hand_sessions"
        ).fetchone()
        conn.rollback()
    return seconds, funnel, sessions


def _mart_rows(url: str, day: dt.date) -> dict[str, list[tuple[object, ...]]]:
    """The day's rows of the three marts, in the comparison's shape."""
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            "sessions": conn.execute(SESSIONS_ROWS_PG).fetchall(),
            "attempts": conn.execute(ATTEMPTS_ROWS_PG, (day,)).fetchall(),
            "funnel_daily": conn.execute(FUNNEL_ROWS_PG, (day,)).fetchall(),
        }


SESSIONS_ROWS_PG = """
select user_id, session_start at time zone 'UTC', session_end at time zone 'UTC', session_day,
       duration_seconds::float8, events, first_event_id, last_event_id
from marts.fct_sessions order by user_id, 2
"""
SESSIONS_ROWS_DUCK = """
select user_id, session_start, session_end, session_day, duration_seconds, events, first_event_id, last_event_id
from d_sessions order by user_id, session_start
"""
ATTEMPTS_ROWS_PG = """
select funnel, user_id, entry_event_id, entry_at at time zone 'UTC', depth,
       array(select jsonb_array_elements_text(matched_event_ids)),
       array(select jsonb_array_elements_text(step_seconds)::float8),
       array(select jsonb_array_elements_text(step_inclusion_rates)::float8), is_immature, is_excluded,
       breakdown_value, is_chosen
from intermediate.int_funnel_attempts where entry_day = %s order by 1, 2, 4, 3
"""
ATTEMPTS_ROWS_DUCK = """
select funnel, user_id, entry_event_id, entry_at, depth, matched_event_ids, step_seconds, step_inclusion_rates,
       is_immature, is_excluded, breakdown_value, is_chosen
from d_attempts where entry_day = ? order by 1, 2, 4, 3
"""
FUNNEL_ROWS_PG = """
select day, funnel, step, channel, event, users, conversion_from_start::float8, conversion_from_previous::float8,
       drop_off, immature, median_seconds_to_step, p90_seconds_to_step, estimated_users::float8, min_sample_rate,
       estimate_reliable
from marts.fct_funnel_daily where day = %s order by 1, 2, 3
"""
FUNNEL_ROWS_DUCK = """
select day, funnel, step, channel, event, users, conversion_from_start, conversion_from_previous,
       drop_off, immature, median_seconds_to_step, p90_seconds_to_step, estimated_users, min_sample_rate,
       estimate_reliable
from d_funnel_daily where day = ? order by 1, 2, 3
"""


def _same(ours: object, theirs: object) -> bool:
    if isinstance(ours, (list, tuple)) and isinstance(theirs, (list, tuple)):
        return len(ours) == len(theirs) and all(_same(a, b) for a, b in zip(ours, theirs, strict=True))
    if isinstance(ours, bool) or isinstance(theirs, bool) or ours is None or theirs is None:
        return ours == theirs
    if isinstance(ours, (int, float, Decimal)) and isinstance(theirs, (int, float, Decimal)):
        return math.isclose(float(ours), float(theirs), rel_tol=1e-9, abs_tol=1e-9)
    return ours == theirs


def _duckdb_rows(db: duckdb.DuckDBPyConnection, day: dt.date) -> dict[str, list[tuple[object, ...]]]:
    return {
        "sessions": db.execute(SESSIONS_ROWS_DUCK).fetchall(),
        "attempts": db.execute(ATTEMPTS_ROWS_DUCK, [day]).fetchall(),
        "funnel_daily": db.execute(FUNNEL_ROWS_DUCK, [day]).fetchall(),
    }


def check_equal(ours: dict[str, list[tuple[object, ...]]], theirs: dict[str, list[tuple[object, ...]]]) -> None:
    """Row for row, in one order; the first difference of each table is the message."""
    problems = []
    for table, rows in ours.items():
        other = theirs[table]
        if not rows:
            problems.append(f"{table}: no rows")
        if len(rows) != len(other):
            problems.append(f"{table}: {len(rows)} rows in PostgreSQL, {len(other)} in DuckDB")
            continue
        for mine, duck in zip(rows, other, strict=True):
            if not _same(mine, duck):
                problems.append(f"{table}: {mine} vs {duck}")
                break
    if problems:
        raise AssertionError("the dbt marts and DuckDB disagree: " + "; ".join(problems))


def _check(url: str, start: dt.datetime, funnel: list[tuple[object, ...]], sessions: tuple) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        mart_funnel = conn.execute(
            "select funnel, step, users, conversion_from_previous from marts.fct_funnel_daily where day = %s"
            " and funnel = any(%s) order by 1, 2",
            (start.date(), list(HAND_FUNNELS)),
        ).fetchall()
        mart_sessions = conn.execute(
            "select count(*), sum(events), sum(extract(epoch from session_end - session_start))"
            " from marts.fct_sessions where session_day = %s",
            (start.date(),),
        ).fetchone()
        attempts = conn.execute(
            "select count(*) from intermediate.int_funnel_attempts where entry_day = %s", (start.date(),)
        ).fetchone()[0]
        events = conn.execute("select count(*) from raw.product_events").fetchone()[0]
    if mart_funnel != funnel or tuple(mart_sessions) != tuple(sessions):
        raise AssertionError(
            f"dbt marts and the hand-written SQL disagree: {mart_funnel} vs {funnel}; {mart_sessions} vs {sessions}"
        )
    purchase_2 = next(row[3] for row in funnel if row[0] == "purchase" and row[1] == 2)
    return {
        "funnel.events": float(events),
        "funnel.sessions": float(mart_sessions[0]),
        "funnel.attempts": float(attempts),
        "funnel.purchase_step2_conversion": float(Decimal(purchase_2)),
    }


def _load(server_url: str, name: str, users: int) -> str:
    """A new database ``name`` with ``users`` users' day of events (50 each) and its statistics."""
    url = local_postgres.create_database(server_url, name, drop=True)
    upgrade(url)
    start = _ts(DAY)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "select raw.ensure_partitions('product_events', %s, %s)",
            (DAY - dt.timedelta(days=8), DAY + dt.timedelta(days=2)),
        )
        conn.execute("select setseed(0.17)")
        conn.execute(LOAD_SQL, {"users": users, "bursts": BURSTS, "per_burst": EVENTS_PER_BURST, "day": start})
        conn.execute("vacuum analyze raw.product_events")
    return url


def models_seconds(result: dbt.DbtBuildResult) -> dict[str, float]:
    """Each model's own seconds in a build (run_results: its SQL, hooks, merge), by model name."""
    return {
        node.unique_id.rsplit(".", 1)[-1]: node.execution_time
        for node in result.nodes
        if node.unique_id.startswith("model.")
    }


def models_span_seconds(result: dbt.DbtBuildResult) -> float:
    """Wall seconds from the first model's start to the last one's end in a build (run_results timings):
    the build's own work with dbt's two threads, without its start-up and parsing."""
    results = json.loads(result.run_results_path.read_text())["results"]
    stamps = [
        dt.datetime.fromisoformat(step[key].replace("Z", "+00:00"))
        for node in results
        if node["unique_id"].startswith("model.")
        for step in node["timing"]
        for key in ("started_at", "completed_at")
    ]
    return (max(stamps) - min(stamps)).total_seconds()


def _build_seconds(url: str, start: dt.datetime, end: dt.datetime) -> float:
    """Create the tables (a first, windowed build), then time a second build of the day without tests."""
    dbt.build(f"+{MODELS.replace(' ', ' +')}", start, end, database_url=url, data_tests=False)
    return models_span_seconds(dbt.build(MODELS, start, end, database_url=url, data_tests=False))


def _duckdb(url: str, workdir: Path) -> tuple[duckdb_funnel.Timings, dict[str, list[tuple[object, ...]]]]:
    with psycopg.connect(url, autocommit=True) as conn:
        funnels = duckdb_funnel.read_funnels(conn)
        duckdb_funnel.export(conn, workdir / "events.csv")
    db = duckdb.connect()
    try:
        duckdb_funnel.load(db, workdir / "events.csv", funnels)
        max_steps = max(len(f.steps) for f in funnels)
        duckdb_funnel.compute(db, max_steps)  # warm-up, as our side's timed build is its second
        timings = duckdb_funnel.compute(db, max_steps)
        return timings, _duckdb_rows(db, DAY)
    finally:
        db.close()


def run(server_url: str) -> dict[str, float]:
    name = f"telemetry_bench_funnel_{os.getpid()}"
    figures: dict[str, float] = {}
    start, end = _ts(DAY), _ts(DAY + dt.timedelta(days=1))
    try:
        loaded = time.perf_counter()
        url = _load(server_url, name, USERS)
        figures["funnel.load_seconds"] = time.perf_counter() - loaded
        # views, seeds and the tables (a first build creates them); warms dbt's parser with the measured vars
        dbt.build(f"+{MODELS.replace(' ', ' +')}", start, end, database_url=url, data_tests=False)
        hand_seconds, funnel, sessions = _hand(url, start, end)
        figures["funnel.handsql_seconds"] = hand_seconds
        models_only = dbt.build(MODELS, start, end, database_url=url, data_tests=False)
        figures["funnel.models_only_seconds"] = models_only.elapsed_seconds
        build_1m = models_span_seconds(models_only)  # before the next build rewrites run_results.json
        with_tests = dbt.build(MODELS, start, end, database_url=url)
        figures["funnel.daily_seconds"] = with_tests.elapsed_seconds
        figures["funnel.vs_handsql"] = figures["funnel.daily_seconds"] / hand_seconds
        figures["funnel.models_only_vs_handsql"] = figures["funnel.models_only_seconds"] / hand_seconds
        figures.update(_check(url, start, funnel, sessions))
        # against DuckDB: the models' own seconds in the build, its compute (the same rows, checked equal)
        ours = models_seconds(models_only)
        with tempfile.TemporaryDirectory(prefix="bench-funnel-") as tmp:
            duck, duck_rows = _duckdb(url, Path(tmp))
        check_equal(_mart_rows(url, DAY), duck_rows)
    finally:
        local_postgres.drop_database(server_url, name)
    figures["funnel.build_seconds"] = build_1m
    figures["funnel.models_sum_seconds"] = sum(ours.values())
    figures["funnel.duckdb_seconds"] = duck.total_seconds
    figures["funnel.vs_duckdb"] = build_1m / duck.total_seconds
    figures["sessions.seconds"] = ours["fct_sessions"]
    figures["sessions.duckdb_seconds"] = duck.sessions_seconds
    figures["sessions.vs_duckdb"] = ours["fct_sessions"] / duck.sessions_seconds
    funnel_ours = ours["int_funnel_attempts"] + ours["fct_funnel_daily"]
    figures["funnel.attempts_and_daily_vs_duckdb"] = funnel_ours / duck.funnel_seconds
    # growth: the same build over three times the users (3 M events), in its own database
    try:
        url = _load(server_url, name, 3 * USERS)
        build_3m = _build_seconds(url, start, end)
    finally:
        local_postgres.drop_database(server_url, name)
    figures["funnel.build_3m_seconds"] = build_3m
    figures["funnel.growth_3m_vs_1m"] = build_3m / build_1m
    return figures


if __name__ == "__main__":
    server = sys.argv[1] if len(sys.argv) > 1 else local_postgres.LOCAL_SERVER_URL
    print(json.dumps(run(server), indent=2))
