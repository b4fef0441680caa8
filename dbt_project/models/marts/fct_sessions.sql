{{
    config(
        incremental_strategy='replace_ranges',
        replace_ranges={'key': 'user_id', 'start': 'session_start', 'end': 'session_end'},
        tags=['daily'],
        pre_hook=product_planner_settings(),
        post_hook=[
            "create index if not exists {{ this.name }}_user_start on {{ this }} (user_id, session_start)",
            "create index if not exists {{ this.name }}_start on {{ this }} (session_start)",
        ],
    )
}}

{#- the window, and with it whether the macros below read late arrivals, is known only when the model runs,
    not when dbt parses it: the dependency is declared here, outside any condition -#}
{%- do ref('stg_product__event_arrivals') %}

{#-
  Sessions (docs/DESIGN.md item 5). A user's events are ordered by (timestamp, event_id); an event
  starts a session when it comes more than `session_inactivity_minutes` after the user's previous
  event, or `session_max_hours` or more after the current session's first event. Whether an event
  starts a session depends only on the events before it, which is what makes windowed runs exact:

  1. touched users: events of the window, and late arrivals (macros/product.sql);
  2. per user, an anchor at or before the first touched event that is known to start a session:
     the latest of (a) an event preceded by more than the inactivity limit (seen among the
     events of the `lookback` before it) and (b) the start of the stored session that the
     first touched event continues (from this table);
  3. sessions are recomputed from the anchor on, up to the first inactivity break after the
     last touched event (later sessions cannot change); the replace_ranges strategy replaces
     the stored sessions of that stretch.
  A chain of activity without any break running past the read range (`lookahead`) is followed
  to its end (users active in every inactivity-sized slot of the lookahead).
-#}

{%- set bounds = window_period_bounds('day') -%}
{%- set gap_minutes = session_inactivity_minutes() -%}
{%- set gap = minutes_interval(gap_minutes) -%}
{%- set max_length = "interval '" ~ session_max_hours() ~ " hours'" -%}
{%- set arrivals = ref('stg_product__event_arrivals') -%}

{%- if bounds is none %}

-- full build: every event
with region_events as (
    select
        user_id,
        occurred_at,
        event_id
    from {{ arrivals }}
),

region_limits as (
    select
        null::text as user_id,
        null::timestamptz as region_end
    where false
),

{%- else %}
{%- set timedelta = modules.datetime.timedelta -%}
{%- set late_days = product_late_arrival_days() -%}
{%- set lookback = timedelta(hours=session_max_hours(), minutes=gap_minutes) -%}
{%- set lookahead = timedelta(hours=6) if timedelta(hours=6) > timedelta(minutes=2 * gap_minutes) else timedelta(minutes=2 * gap_minutes) -%}
{%- set read_end = bounds.upper + lookahead -%}
{%- set slots = (lookahead.total_seconds() // (gap_minutes * 60)) | int -%}

with touched as (
    select
        user_id,
        occurred_at
    from {{ arrivals }}
    where occurred_at >= {{ timestamp_literal(bounds.lower) }} and occurred_at < {{ timestamp_literal(bounds.upper) }}
    union all
    {{ product_late_arrivals('day') }}
),

seeds as (
    select
        user_id,
        min(occurred_at) as first_at,
        max(occurred_at) as last_at
    from touched
    group by user_id
),

-- the events of the lookback before a touched user's first touched event (for window users, the
-- lookback before the window; late users apart, so a run without late arrivals reads no late days)
lookback_events as (
    select
        arrivals.user_id,
        arrivals.occurred_at,
        arrivals.event_id
    from {{ arrivals }} as arrivals
    inner join seeds on seeds.user_id = arrivals.user_id
    where arrivals.occurred_at >= {{ timestamp_literal(bounds.lower - lookback) }}
        and arrivals.occurred_at < {{ timestamp_literal(bounds.lower) }}
        and arrivals.occurred_at >= seeds.first_at - {{ max_length }} - {{ gap }}
        and arrivals.occurred_at < seeds.first_at
    {%- if late_days > 0 %}
    union all
    select
        arrivals.user_id,
        arrivals.occurred_at,
        arrivals.event_id
    from {{ arrivals }} as arrivals
    inner join (select * from seeds where first_at < {{ timestamp_literal(bounds.lower) }}) as late_seeds
        on late_seeds.user_id = arrivals.user_id
    where arrivals.occurred_at >= {{ timestamp_literal(bounds.lower - timedelta(days=late_days) - lookback) }}
        and arrivals.occurred_at < {{ timestamp_literal(bounds.lower - lookback) }}
        and arrivals.occurred_at >= late_seeds.first_at - {{ max_length }} - {{ gap }}
        and arrivals.occurred_at < late_seeds.first_at
    {%- endif %}
),

-- (a) events known to follow a break: preceded by more than the inactivity limit, the
-- predecessor being seen, or lying further than the limit into the lookback
breaks_before as (
    select
        lookback.user_id,
        max(lookback.occurred_at) filter (
            where (lookback.previous_at is null and lookback.occurred_at > seeds.first_at - {{ max_length }})
                or lookback.occurred_at - lookback.previous_at > {{ gap }}
        ) as break_at,
        min(lookback.occurred_at) as earliest_at,
        max(lookback.occurred_at) as last_before
    from (
        select
            user_id,
            occurred_at,
            lag(occurred_at) over (partition by user_id order by occurred_at, event_id) as previous_at
        from lookback_events
    ) as lookback
    inner join seeds on seeds.user_id = lookback.user_id
    group by lookback.user_id
),

{%- if is_incremental() %}

-- (b) the stored session the first touched event continues
stored as (
    select distinct on (sessions.user_id)
        sessions.user_id,
        sessions.session_start
    from {{ this }} as sessions
    inner join seeds on seeds.user_id = sessions.user_id
    where sessions.session_start >= {{ timestamp_literal(bounds.lower - timedelta(days=late_days) - lookback) }}
        and sessions.session_start <= {{ timestamp_literal(bounds.upper) }}
        and sessions.session_start >= seeds.first_at - {{ max_length }} - {{ gap }}
        and sessions.session_start <= seeds.first_at
        and sessions.session_end >= seeds.first_at - {{ gap }}
    order by sessions.user_id, sessions.session_start desc
),

{%- endif %}

anchors as (
    select
        seeds.user_id,
        seeds.last_at,
        coalesce(
            greatest(
                breaks_before.break_at,
                -- the first touched event itself follows a break (or nothing within the lookback)
                case
                    when breaks_before.last_before is null
                        or seeds.first_at - breaks_before.last_before > {{ gap }}
                        then seeds.first_at
                end
                {%- if is_incremental() %},
                stored.session_start
                {%- endif %}
            ),
            breaks_before.earliest_at
        ) as anchor_at
    from seeds
    left join breaks_before on breaks_before.user_id = seeds.user_id
    {%- if is_incremental() %}
    left join stored on stored.user_id = seeds.user_id
    {%- endif %}
),

-- after the window, touched users only, over the lookahead
lookahead_events as (
    select
        user_id,
        occurred_at,
        event_id
    from {{ arrivals }}
    where occurred_at >= {{ timestamp_literal(bounds.upper) }}
        and occurred_at < {{ timestamp_literal(read_end) }}
        and user_id in (select user_id from seeds)
),

-- users active in every inactivity-sized slot of the lookahead: their chain may run on
unbroken as (
    select user_id
    from lookahead_events
    group by user_id
    having count(distinct floor(extract(epoch from occurred_at - {{ timestamp_literal(bounds.upper) }}) / {{ gap_minutes * 60 }})) >= {{ slots }}
),

-- every touched user's events from their anchor on
region_events as (
    -- the window: everyone with an event in it is a touched user
    select
        user_id,
        occurred_at,
        event_id
    from {{ arrivals }}
    where occurred_at >= {{ timestamp_literal(bounds.lower) }} and occurred_at < {{ timestamp_literal(bounds.upper) }}
    union all
    select * from lookahead_events
    union all
    -- before the window, from the anchor on
    select
        arrivals.user_id,
        arrivals.occurred_at,
        arrivals.event_id
    from {{ arrivals }} as arrivals
    inner join (select * from anchors where anchor_at < {{ timestamp_literal(bounds.lower) }}) as early
        on early.user_id = arrivals.user_id
    where arrivals.occurred_at >= {{ timestamp_literal(bounds.lower - lookback) }}
        and arrivals.occurred_at < {{ timestamp_literal(bounds.lower) }}
        and arrivals.occurred_at >= early.anchor_at
    {%- if late_days > 0 %}
    union all
    select
        arrivals.user_id,
        arrivals.occurred_at,
        arrivals.event_id
    from {{ arrivals }} as arrivals
    inner join (select * from anchors where anchor_at < {{ timestamp_literal(bounds.lower - lookback) }}) as late_anchors
        on late_anchors.user_id = arrivals.user_id
    where arrivals.occurred_at >= {{ timestamp_literal(bounds.lower - timedelta(days=late_days) - lookback) }}
        and arrivals.occurred_at < {{ timestamp_literal(bounds.lower - lookback) }}
        and arrivals.occurred_at >= late_anchors.anchor_at
    {%- endif %}
    union all
    -- a chain still running at the end of the lookahead, to its end
    select
        arrivals.user_id,
        arrivals.occurred_at,
        arrivals.event_id
    from {{ arrivals }} as arrivals
    inner join unbroken on unbroken.user_id = arrivals.user_id
    where arrivals.occurred_at >= {{ timestamp_literal(read_end) }}
),

{%- endif %}

flagged as (
    select
        user_id,
        occurred_at,
        event_id,
        lag(occurred_at) over user_events as previous_at,
        lead(occurred_at) over user_events as next_at
    from region_events
    window user_events as (partition by user_id order by occurred_at, event_id)
),

-- runs: maximal stretches without a break of more than the inactivity limit, each named by its first
-- event's time (a running maximum over the same order: no second sort, and no row number to carry)
runs as (
    select
        user_id,
        occurred_at,
        event_id,
        next_at,
        starts_run,
        ends_run,
        max(occurred_at) filter (where starts_run) over (
            partition by user_id order by occurred_at, event_id rows unbounded preceding
        ) as run_start
    from (
        select
            *,
            previous_at is null or occurred_at - previous_at > {{ gap }} as starts_run,
            next_at is null or next_at - occurred_at > {{ gap }} as ends_run
        from flagged
    ) as marked
),

-- one aggregate over the events (a hash aggregate: nothing in it needs its rows sorted): the run as a
-- session, and for a run of session_max_hours or more (rare: a day of activity without a pause) its
-- head, the events before run start + max length, which is its first session
run_sessions as (
    select
        user_id,
        run_start as session_start,
        max(occurred_at) as session_end,
        count(*) as events,
        max(event_id) filter (where starts_run) as first_event_id,
        max(event_id) filter (where ends_run) as last_event_id,
        count(*) filter (where occurred_at < run_start + {{ max_length }}) as head_events,
        max(occurred_at) filter (where occurred_at < run_start + {{ max_length }}) as head_end,
        -- the head's last event: the one whose successor lies past the head
        max(event_id) filter (
            where occurred_at < run_start + {{ max_length }} and next_at >= run_start + {{ max_length }}
        ) as head_last_event_id
    from runs
    group by user_id, run_start
),

long_runs as (
    select
        user_id,
        session_start as run_start,
        session_end as run_end
    from run_sessions
    where session_end >= session_start + {{ max_length }}
),

-- a long run's tail, the events from run start + max length to its end, which are cut below: every
-- event of the user in that stretch belongs to the run. Read again from staging rather than kept from
-- the pass above, so the common case (no long run: an empty hash side) reads nothing.
tail_events as (
    select
        long_runs.user_id,
        long_runs.run_start,
        arrivals.occurred_at,
        arrivals.event_id
    from {{ arrivals }} as arrivals
    inner join long_runs
        on long_runs.user_id = arrivals.user_id
        and arrivals.occurred_at >= long_runs.run_start + {{ max_length }}
        and arrivals.occurred_at <= long_runs.run_end
    {%- if bounds is not none %}
    where arrivals.occurred_at >= {{ timestamp_literal(bounds.lower - modules.datetime.timedelta(days=late_days) - lookback) }}
    {%- endif %}
),

-- the tail's sessions: the first starts at its first event, each next one at the first event at
-- least max length after the current one's start
cuts as (
    select * from (
        with recursive chain (user_id, run_start, session_start) as (
            select
                user_id,
                run_start,
                min(occurred_at) as session_start
            from tail_events
            group by user_id, run_start
            union all
            select
                chain.user_id,
                chain.run_start,
                next_cut.session_start
            from chain
            cross join lateral (
                select min(events.occurred_at) as session_start
                from tail_events as events
                where events.user_id = chain.user_id
                    and events.run_start = chain.run_start
                    and events.occurred_at >= chain.session_start + {{ max_length }}
            ) as next_cut
            where next_cut.session_start is not null
        )

        select * from chain
    ) as chain
),

cut_sessions as (
    select
        user_id,
        session_start,
        max(occurred_at) as session_end,
        count(*) as events,
        (array_agg(event_id order by occurred_at, event_id))[1] as first_event_id,
        (array_agg(event_id order by occurred_at desc, event_id desc))[1] as last_event_id
    from (
        select
            tail_events.*,
            (
                select max(cuts.session_start)
                from cuts
                where cuts.user_id = tail_events.user_id
                    and cuts.run_start = tail_events.run_start
                    and cuts.session_start <= tail_events.occurred_at
            ) as session_start
        from tail_events
    ) as assigned
    group by user_id, session_start
),

sessions as (
    select
        user_id,
        session_start,
        head_end as session_end,
        head_events as events,
        first_event_id,
        coalesce(head_last_event_id, last_event_id) as last_event_id
    from run_sessions
    union all
    select
        user_id,
        session_start,
        session_end,
        events,
        first_event_id,
        last_event_id
    from cut_sessions
),

{%- if bounds is not none %}

-- a touched user's sessions up to the first break after their last touched event
region_limits as (
    select
        anchors.user_id,
        min(run_sessions.session_start) as region_end
    from run_sessions
    inner join anchors on anchors.user_id = run_sessions.user_id
    where run_sessions.session_start > anchors.last_at
    group by anchors.user_id
),

{%- endif %}

final as (
    select
        sessions.user_id,
        sessions.session_start,
        sessions.session_end,
        {{ utc_date('sessions.session_start') }} as session_day,
        trim_scale(extract(epoch from sessions.session_end - sessions.session_start)) as duration_seconds,
        sessions.events,
        sessions.first_event_id,
        sessions.last_event_id
    from sessions
    left join region_limits on region_limits.user_id = sessions.user_id
    where region_limits.region_end is null or sessions.session_start < region_limits.region_end
)

select * from final
