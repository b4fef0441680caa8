"""The funnel benchmark's DuckDB baseline: sessions, funnel attempts and daily funnels by the marts' rules.

The events are exported from PostgreSQL once (COPY to CSV, read into a DuckDB table: not timed); ``compute``
then builds three tables, timed, with the rules of ``fct_sessions``, ``int_funnel_attempts`` and
``fct_funnel_daily`` (docs/DESIGN.md, "Sessions" and "Funnels"):

* sessions: a user's events in (timestamp, event_id) order; a session starts after more than the
  inactivity limit, or at the first event ``max_hours`` or more after the session's first event;
* attempts (ordered funnels whose steps are distinct kinds, which the bench checks): every step-1 event
  is an entry; step k is the earliest step-k event, by (timestamp, event_id), at or after step k-1's
  plus the step's minimum gap (an ASOF join per step), kept when it is within the window from the entry
  and within the step's maximum gap from step k-1's (the earliest event at or after the lower bound is
  the only candidate: any later one is later still); an attempt is excluded when an exclusion's event
  lies strictly between its after-step match and its before-step match (the window's end when that
  step is unmatched); per funnel, user and entry day the deepest attempt not excluded is chosen, the
  earliest entry (then event_id) on ties; a funnel's breakdown value is the entry payload's key path;
* daily funnels: per entry day, funnel and step the users, conversions, drop-off, immature, median and
  p90 seconds to the step and the Horvitz-Thompson estimate, as the mart has them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import psycopg

EXPORT_SQL = (
    "copy (select event_id, channel, event, (\"timestamp\" at time zone 'UTC') as ts, user_id, sample_rate, payload"
    " from raw.product_events) to stdout with (format csv)"
)


@dataclass(frozen=True)
class Funnel:
    name: str
    window_minutes: int
    steps: list[tuple[str, str]]  # (channel, event) of steps 1..n
    # per step 1..n, the gap limits from the previous step's match in seconds (None: no limit)
    min_seconds: list[int | None] = field(default_factory=list)
    max_seconds: list[int | None] = field(default_factory=list)
    exclusions: list[tuple[int, int, str, str]] = field(default_factory=list)  # after, before, channel, event
    breakdown: str | None = None  # payload key path, dots between keys


def read_funnels(conn: psycopg.Connection) -> list[Funnel]:
    """The seeds as dbt loaded them; only what this baseline implements (ordered, distinct step kinds)."""
    funnels = []
    for name, window, strict, breakdown in conn.execute(
        "select funnel, window_minutes, strict_order, nullif(breakdown, '') from seeds.funnels"
    ):
        steps = conn.execute(
            "select channel, event, min_seconds_from_previous, max_seconds_from_previous"
            " from seeds.funnel_steps where funnel = %s order by step",
            (name,),
        ).fetchall()
        kinds = [(channel, event) for channel, event, _, _ in steps]
        if strict or len(set(kinds)) != len(kinds):
            raise NotImplementedError(f"funnel {name}: the DuckDB baseline has ordered funnels of distinct kinds only")
        exclusions = conn.execute(
            "select after_step, before_step, channel, event from seeds.funnel_exclusions where funnel = %s", (name,)
        ).fetchall()
        funnels.append(
            Funnel(
                name,
                int(window),
                kinds,
                [row[2] for row in steps],
                [row[3] for row in steps],
                [tuple(row) for row in exclusions],
                breakdown,
            )
        )
    return funnels


def export(conn: psycopg.Connection, path: Path) -> None:
    with open(path, "wb") as handle, conn.cursor().copy(EXPORT_SQL) as copy:
        for block in copy:
            handle.write(block)


def load(db: duckdb.DuckDBPyConnection, csv_path: Path, funnels: list[Funnel]) -> None:
    db.execute(
        "create or replace table events as select * from read_csv(?, header = false, columns = {"
        "'event_id': 'varchar', 'channel': 'varchar', 'event': 'varchar', 'ts': 'timestamp',"
        " 'user_id': 'varchar', 'sample_rate': 'double', 'payload': 'varchar'})",
        [str(csv_path)],
    )
    db.execute("create or replace table funnels (funnel varchar, window_minutes integer, breakdown varchar)")
    db.execute(
        "create or replace table steps (funnel varchar, step integer, channel varchar, event varchar,"
        " min_seconds integer, max_seconds integer)"
    )
    db.execute(
        "create or replace table exclusions (funnel varchar, after_step integer, before_step integer,"
        " channel varchar, event varchar)"
    )
    for funnel in funnels:
        db.execute("insert into funnels values (?, ?, ?)", [funnel.name, funnel.window_minutes, funnel.breakdown])
        for step, (channel, event) in enumerate(funnel.steps, start=1):
            limits = (funnel.min_seconds[step - 1], funnel.max_seconds[step - 1]) if funnel.min_seconds else (None,) * 2
            db.execute("insert into steps values (?, ?, ?, ?, ?, ?)", [funnel.name, step, channel, event, *limits])
        for exclusion in funnel.exclusions:
            db.execute("insert into exclusions values (?, ?, ?, ?, ?)", [funnel.name, *exclusion])


def sessions_sql(gap_minutes: int, max_hours: int) -> str:
    return f"""
create or replace table d_sessions as
with recursive flagged as (
    select user_id, ts, event_id,
        coalesce(ts - lag(ts) over w > interval {gap_minutes} minute, true) as starts_run,
        coalesce(lead(ts) over w - ts > interval {gap_minutes} minute, true) as ends_run
    from events
    window w as (partition by user_id order by ts, event_id)
),
runs as (
    select *, sum(starts_run::int) over (partition by user_id order by ts, event_id rows unbounded preceding) as run
    from flagged
),
run_sessions as (
    select user_id, run, min(ts) as session_start, max(ts) as session_end, count(*) as events,
        max(event_id) filter (where starts_run) as first_event_id,
        max(event_id) filter (where ends_run) as last_event_id
    from runs
    group by user_id, run
),
long_events as (
    select runs.user_id, runs.run, runs.ts, runs.event_id
    from runs
    semi join run_sessions as long_runs
        on long_runs.user_id = runs.user_id and long_runs.run = runs.run
        and long_runs.session_end >= long_runs.session_start + interval {max_hours} hour
),
cuts (user_id, run, session_start) as (
    select user_id, run, session_start from run_sessions
    where session_end >= session_start + interval {max_hours} hour
    union all
    select cuts.user_id, cuts.run, min(long_events.ts)
    from cuts
    join long_events on long_events.user_id = cuts.user_id and long_events.run = cuts.run
        and long_events.ts >= cuts.session_start + interval {max_hours} hour
    group by cuts.user_id, cuts.run, cuts.session_start
),
cut_sessions as (
    select long_events.user_id, cuts.session_start, max(long_events.ts) as session_end, count(*) as events,
        first(long_events.event_id order by long_events.ts, long_events.event_id) as first_event_id,
        last(long_events.event_id order by long_events.ts, long_events.event_id) as last_event_id
    from long_events
    asof join cuts on cuts.user_id = long_events.user_id and cuts.run = long_events.run
        and long_events.ts >= cuts.session_start
    group by long_events.user_id, cuts.session_start
),
sessions as (
    select user_id, session_start, session_end, events, first_event_id, last_event_id from run_sessions
    where session_end < session_start + interval {max_hours} hour
    union all
    select * from cut_sessions
)
select user_id, session_start, session_end, session_start::date as session_day,
    epoch(session_end - session_start) as duration_seconds, events, first_event_id, last_event_id
from sessions
"""


def attempts_sql(max_steps: int) -> str:
    steps = range(2, max_steps + 1)

    def previous(k: int) -> str:
        return "entries.entry_at" if k == 2 else f"s{k - 1}.ts"

    joins = "\n".join(
        f"""asof left join (select * from matches where step = {k}) as s{k}
    on s{k}.funnel = entries.funnel and s{k}.user_id = entries.user_id
    and s{k}.ts >= {previous(k)} + entries.min_gap_{k}"""
        for k in steps
    )
    fits = {
        k: " and ".join(
            f"s{j}.ts <= entries.closes_at"
            f" and (entries.max_gap_{j} is null or s{j}.ts <= {previous(j)} + entries.max_gap_{j})"
            for j in range(2, k + 1)
        )
        for k in steps
    }
    gaps = ",\n        ".join(
        f"coalesce(to_seconds(max(steps.min_seconds) filter (where steps.step = {k})), interval 0 second)"
        f" as min_gap_{k},"
        f" to_seconds(max(steps.max_seconds) filter (where steps.step = {k})) as max_gap_{k}"
        for k in steps
    )
    next_gap = " ".join(f"when {k - 1} then max_gap_{k}" for k in steps)
    depth = " + ".join(["1"] + [f"case when coalesce({fits[k]}, false) then 1 else 0 end" for k in steps])
    ids = ", ".join(["entries.entry_event_id"] + [f"s{k}.event_id" for k in steps])
    times = ", ".join(["entries.entry_at"] + [f"s{k}.ts" for k in steps])
    secs = ", ".join(["0.0"] + [f"epoch(s{k}.ts - entries.entry_at)" for k in steps])
    rates = ", ".join(
        ["entries.sample_rate"]
        + [
            f"least({', '.join(['entries.sample_rate'] + [f's{j}.sample_rate' for j in range(2, k + 1)])})"
            for k in steps
        ]
    )
    return f"""
create or replace table d_attempts as
with candidates as (
    select steps.funnel, steps.step, events.user_id, events.ts, events.event_id, events.sample_rate,
        case when steps.step = 1 then events.payload end as payload
    from events join steps on steps.channel = events.channel and steps.event = events.event
),
-- of one step's events at one timestamp the smallest event_id is the match
matches as (
    select funnel, user_id, step, ts, min(event_id) as event_id, arg_min(sample_rate, event_id) as sample_rate
    from candidates where step > 1
    group by funnel, user_id, step, ts
),
gaps as (
    select steps.funnel,
        {gaps}
    from steps
    group by steps.funnel
),
entries as (
    select candidates.funnel, candidates.user_id, candidates.event_id as entry_event_id, candidates.ts as entry_at,
        candidates.sample_rate, candidates.ts + to_minutes(funnels.window_minutes) as closes_at,
        (select count(*) from steps where steps.funnel = candidates.funnel) as steps_total,
        case when funnels.breakdown is not null
             then coalesce(json_extract_string(candidates.payload, '$.' || funnels.breakdown), '(none)') end
            as breakdown_value,
        gaps.* exclude (funnel)
    from candidates
    join funnels on funnels.funnel = candidates.funnel
    join gaps on gaps.funnel = candidates.funnel
    where candidates.step = 1
),
matched as (
    select entries.*, {depth} as depth,
        [{ids}] as all_ids, [{secs}] as all_seconds, [{rates}] as all_rates, [{times}] as all_times
    from entries
    {joins}
),
excluding as (
    select exclusions.funnel, exclusions.after_step, exclusions.before_step, events.user_id, events.ts
    from events join exclusions on exclusions.channel = events.channel and exclusions.event = events.event
),
flagged as (
    select matched.*,
        exists (
            select 1 from excluding
            where excluding.funnel = matched.funnel and excluding.user_id = matched.user_id
                and matched.depth >= excluding.after_step
                and excluding.ts > matched.all_times[excluding.after_step]
                and excluding.ts < coalesce(
                    case when matched.depth >= excluding.before_step then matched.all_times[excluding.before_step] end,
                    matched.closes_at)
        ) as is_excluded
    from matched
),
data_end as (select max(ts) as latest from events)
select funnel, user_id, entry_event_id, entry_at, entry_at::date as entry_day, depth,
    all_ids[1:depth] as matched_event_ids, all_seconds[1:depth] as step_seconds,
    all_rates[1:depth] as step_inclusion_rates,
    depth < steps_total
        and least(closes_at, all_times[depth] + case depth {next_gap} end) > (select latest from data_end)
        as is_immature,
    is_excluded, breakdown_value,
    not is_excluded and row_number() over (partition by funnel, user_id, entry_at::date, is_excluded
                       order by depth desc, entry_at, entry_event_id) = 1 as is_chosen
from flagged
"""


def funnel_daily_sql(min_sampled_users: int) -> str:
    return f"""
create or replace table d_funnel_daily as
with per_step as (
    select chosen.entry_day as day, chosen.funnel, steps.step, steps.channel, steps.event,
        count(*) filter (where chosen.depth >= steps.step) as users,
        count(*) filter (where chosen.depth = steps.step - 1 and chosen.is_immature) as immature,
        coalesce(sum(1 / chosen.step_inclusion_rates[steps.step]) filter (where chosen.depth >= steps.step), 0)
            as estimated_users,
        min(chosen.step_inclusion_rates[steps.step]) filter (where chosen.depth >= steps.step) as min_sample_rate,
        quantile_cont(chosen.step_seconds[steps.step], 0.5) filter (where chosen.depth >= steps.step)
            as median_seconds_to_step,
        quantile_cont(chosen.step_seconds[steps.step], 0.9) filter (where chosen.depth >= steps.step)
            as p90_seconds_to_step
    from (select * from d_attempts where is_chosen) as chosen
    join steps on steps.funnel = chosen.funnel
    group by all
),
with_previous as (
    select *,
        first_value(users) over w as entered,
        lag(users) over w as previous_users,
        min(min_sample_rate) over (partition by day, funnel) as funnel_min_sample_rate
    from per_step
    window w as (partition by day, funnel order by step)
)
select day, funnel, step, channel, event, users,
    users / nullif(entered, 0) as conversion_from_start,
    case when step = 1 then 1 else users / nullif(previous_users, 0) end as conversion_from_previous,
    previous_users - users - immature as drop_off, immature, median_seconds_to_step, p90_seconds_to_step,
    estimated_users, min_sample_rate,
    coalesce(users >= {min_sampled_users} or coalesce(min_sample_rate, funnel_min_sample_rate) >= 1, false)
        as estimate_reliable
from with_previous
"""


@dataclass(frozen=True)
class Timings:
    sessions_seconds: float
    funnel_seconds: float  # attempts and daily funnels

    @property
    def total_seconds(self) -> float:
        return self.sessions_seconds + self.funnel_seconds


def compute(db: duckdb.DuckDBPyConnection, max_steps: int, *, gap_minutes: int = 30, max_hours: int = 24) -> Timings:
    """Build d_sessions, d_attempts and d_funnel_daily; the seconds of each part."""
    started = time.perf_counter()
    db.execute(sessions_sql(gap_minutes, max_hours))
    sessions_done = time.perf_counter()
    db.execute(attempts_sql(max_steps))
    db.execute(funnel_daily_sql(30))
    return Timings(sessions_done - started, time.perf_counter() - sessions_done)
