{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='entry_day',
        on_schema_change='fail',
        tags=['daily'],
        pre_hook=product_planner_settings(),
        post_hook="create index if not exists {{ this.name }}_entry_day on {{ this }} (entry_day)",
    )
}}

{#- the window, and with it whether the macros below read late arrivals, is known only when the model runs,
    not when dbt parses it: the dependency is declared here, outside any condition -#}
{%- do ref('stg_product__event_arrivals') %}

{#-
  Every funnel attempt (docs/DESIGN.md item 4), one row each: every step-1 event is an entry.

  * ordered mode: step k is the earliest event of step k's (channel, event), by (timestamp,
    event_id), with a timestamp at or after step k-1's (at equal timestamps steps count in funnel
    order) and at most window_minutes after the entry (exactly on the limit counts), within the
    step's limits from step k-1's match ([previous + min_seconds_from_previous, previous +
    max_seconds_from_previous], both ends included), that fills no earlier step of the attempt;
  * strict mode: the user's events in order (timestamp, r, event_id), r = the lowest step index
    of the event's kind in the funnel, 0 for other events; step k must be the very next event
    after step k-1, within the window and the step's limits, else the attempt stops.
  An attempt with an event of a funnel_exclusions kind strictly after its after_step match and
  strictly before its before_step match (the window's end when that step is unmatched) is
  excluded. Per funnel, user and entry day the chosen attempt is the deepest not excluded, the
  earliest entry on ties. breakdown_value is the entry event's payload at funnels.breakdown.

  A windowed run recomputes whole entry days: those overlapping [window start - longest
  conversion window, window end) and those late arrivals touch (macros/product.sql). Events are
  read from each such day to the end of the next one (conversion windows are at most one day).

  For events sampled by user, step_inclusion_rates holds per filled step k the smallest sample_rate
  of the events that filled steps 1..k: the chance that sampling kept everything the attempt needed
  to get that far (docs/DESIGN.md, "Sampling"). The funnel marts weigh a user at step k by its
  inverse.
-#}



{%- set bounds = window_period_bounds('day') -%}
{%- set max_steps = funnel_max_steps() -%}
{%- set max_window_minutes = funnel_max_window_minutes() -%}
{%- if max_window_minutes > 1440 -%}
    {{ exceptions.raise_compiler_error("var funnel_max_window_minutes=" ~ max_window_minutes ~ " must be at most 1440 (one day)") }}
{%- endif -%}
{%- set arrivals = ref('stg_product__event_arrivals') -%}

with steps as (
    select
        steps.funnel,
        steps.step,
        steps.channel,
        steps.event,
        make_interval(secs => steps.min_seconds_from_previous) as min_gap,
        make_interval(secs => steps.max_seconds_from_previous) as max_gap,
        -- the entry event's payload path the funnel breaks down by (null: no breakdown)
        case when steps.step = 1 then string_to_array(nullif(funnels.breakdown, ''), '.') end as breakdown_path
    from {{ ref('funnel_steps') }} as steps
    inner join {{ ref('funnels') }} as funnels on funnels.funnel = steps.funnel
),

funnels as (
    select
        funnels.funnel,
        funnels.window_minutes,
        funnels.strict_order,
        make_interval(mins => funnels.window_minutes) as window_length,
        step_counts.steps_total,
        step_counts.repeats_kinds,
        step_counts.has_min_gaps,
        step_counts.min_gaps,
        step_counts.max_gaps
    from {{ ref('funnels') }} as funnels
    inner join (
        select
            funnel,
            max(step) as steps_total,
            count(*) > count(distinct (channel, event)) as repeats_kinds,
            coalesce(bool_or(min_gap > interval '0'), false) as has_min_gaps,
            -- indexed by step; null where the step has no such limit
            array_agg(min_gap order by step) as min_gaps,
            array_agg(max_gap order by step) as max_gaps
        from steps
        group by funnel
    ) as step_counts on step_counts.funnel = funnels.funnel
),

exclusions as (
    select
        funnel,
        after_step,
        before_step,
        channel,
        event
    from {{ ref('funnel_exclusions') }}
),

{%- if bounds is not none %}
{%- set timedelta = modules.datetime.timedelta -%}
{%- set read_from = floor_to_grain(bounds.lower - timedelta(days=product_late_arrival_days(), minutes=max_window_minutes), 'day') -%}
{%- set read_to = bounds.upper + timedelta(days=1) -%}
{%- set window_from = floor_to_grain(bounds.lower - timedelta(minutes=max_window_minutes), 'day') %}

reopened_days as (
    {{ funnel_reopened_days('funnels') }}
),

{%- endif %}

-- events of a funnel step's kind, once per step they can fill
candidates as (
    select
        steps.funnel,
        steps.step,
        arrivals.user_id,
        arrivals.occurred_at,
        arrivals.event_id,
        arrivals.sample_rate,
        case
            when steps.breakdown_path is not null then coalesce(arrivals.payload #>> steps.breakdown_path, '(none)')
        end as breakdown_value
    from {{ arrivals }} as arrivals
    inner join steps
        on steps.channel = arrivals.channel
        and steps.event = arrivals.event
    {%- if bounds is not none %}
    where {{ funnel_read_filter('arrivals.occurred_at', read_from, window_from, read_to) }}
    {%- endif %}
),

-- events of an exclusion's kind, once per exclusion of that kind. Materialized: inlined, the planner
-- joins the day's events with every attempt on user_id before it looks at the kinds (8 M rows for 1 M
-- events); computed first they are a small hash table the few attempts of excluding funnels probe
exclusion_events as materialized (
    select
        exclusions.funnel,
        exclusions.after_step,
        exclusions.before_step,
        arrivals.user_id,
        arrivals.occurred_at
    from {{ arrivals }} as arrivals
    inner join exclusions
        on exclusions.channel = arrivals.channel
        and exclusions.event = arrivals.event
    {%- if bounds is not none %}
    where {{ funnel_read_filter('arrivals.occurred_at', read_from, window_from, read_to) }}
    {%- endif %}
),

entries as (
    select
        candidates.funnel,
        candidates.user_id,
        candidates.event_id as entry_event_id,
        candidates.occurred_at as entry_at,
        {{ utc_date('candidates.occurred_at') }} as entry_day,
        candidates.occurred_at + funnels.window_length as window_closes_at,
        funnels.strict_order,
        funnels.repeats_kinds or funnels.has_min_gaps as step_at_a_time,
        candidates.sample_rate as entry_sample_rate,
        candidates.breakdown_value
    from candidates
    inner join funnels on funnels.funnel = candidates.funnel
    where candidates.step = 1
    {%- if bounds is not none %}
        and {{ utc_date('candidates.occurred_at') }} in (select day from reopened_days)
    {%- endif %}
),

-- ordered mode, funnels whose steps are distinct kinds and that set no minimum gap: an event fills at
-- most one step, so step k's match is "the earliest step-k event at or after step k-1's match" and
-- depends on that match's timestamp alone. One pass over a user's candidates in reverse
-- (timestamp, step, event_id) order gives every row the timestamp of the next event of each step at
-- or after it (at equal timestamps later steps sort after, so they count, as the rule says); of the
-- events of one step at one timestamp the smallest event_id is the match. The chain of matches is
-- then a hash join per step on (funnel, user, step, timestamp): cost linear in the events. A maximum
-- gap keeps this true: if the earliest event at or after step k-1's match is too late, any later is too.
chain_events as (
    select
        candidates.funnel,
        candidates.step,
        candidates.user_id,
        candidates.occurred_at,
        candidates.event_id,
        candidates.sample_rate,
        case candidates.step
            {%- for k in range(1, max_steps) %}
            when {{ k }} then min(candidates.occurred_at) filter (where candidates.step = {{ k + 1 }}) over at_or_after
            {%- endfor %}
        end as next_at,
        -- the last row of its (step, timestamp) group in this order holds the group's smallest event_id
        lead(candidates.step) over at_or_after is distinct from candidates.step
            or lead(candidates.occurred_at) over at_or_after is distinct from candidates.occurred_at as is_match
    from candidates
    inner join funnels on funnels.funnel = candidates.funnel
    where not funnels.strict_order and not funnels.repeats_kinds and not funnels.has_min_gaps
    window at_or_after as (
        partition by candidates.funnel, candidates.user_id
        order by candidates.occurred_at desc, candidates.step desc, candidates.event_id desc
        rows between unbounded preceding and current row
    )
),

chain_matches as (
    select
        funnel,
        user_id,
        step,
        occurred_at,
        event_id,
        sample_rate,
        next_at
    from chain_events
    where is_match and step > 1
),

chain_attempts as (
    select
        entries.funnel,
        entries.user_id,
        entries.entry_event_id,
        entries.entry_at,
        array_remove(array[entries.entry_event_id{% for k in range(2, max_steps + 1) %}, step_{{ k }}.event_id{% endfor %}], null)
            as event_ids,
        array_remove(array[entries.entry_at{% for k in range(2, max_steps + 1) %}, step_{{ k }}.occurred_at{% endfor %}], null)
            as step_times,
        false as stopped_by_other_event,
        array_remove(array[
            first_step.sample_rate
            {%- for k in range(2, max_steps + 1) %},
            case when step_{{ k }}.event_id is not null then least(first_step.sample_rate{% for j in range(2, k + 1) %}, step_{{ j }}.sample_rate{% endfor %}) end
            {%- endfor %}
        ], null) as step_rates,
        array_remove(array[
            0::numeric
            {%- for k in range(2, max_steps + 1) %},
            trim_scale(extract(epoch from step_{{ k }}.occurred_at - entries.entry_at))
            {%- endfor %}
        ], null) as step_seconds,
        entries.breakdown_value
    from chain_events as first_step
    inner join entries
        on entries.funnel = first_step.funnel
        and entries.user_id = first_step.user_id
        and entries.entry_event_id = first_step.event_id
        and entries.entry_at = first_step.occurred_at
    inner join funnels on funnels.funnel = entries.funnel
    {%- for k in range(2, max_steps + 1) %}
    {%- set previous = 'first_step' if k == 2 else 'step_' ~ (k - 1) %}
    left join chain_matches as step_{{ k }}
        on step_{{ k }}.funnel = entries.funnel
        and step_{{ k }}.user_id = entries.user_id
        and step_{{ k }}.step = {{ k }}
        and step_{{ k }}.occurred_at = {{ previous }}.next_at
        and {{ previous }}.next_at <= entries.window_closes_at
        and (funnels.max_gaps[{{ k }}] is null or {{ previous }}.next_at <= {{ previous }}.occurred_at + funnels.max_gaps[{{ k }}])
    {%- endfor %}
    where first_step.step = 1
),

-- ordered mode, funnels that repeat a kind or set a minimum gap, one step at a time: the attempts that
-- reached step k. With a minimum gap, step k's match is no longer "the next step-k event at or after
-- step k-1's", which the chain above relies on.
-- their candidates for steps 2.., apart: each step's join below scans these, not every funnel's events
step_candidates as (
    select
        candidates.funnel,
        candidates.step,
        candidates.user_id,
        candidates.occurred_at,
        candidates.event_id,
        candidates.sample_rate
    from candidates
    inner join funnels on funnels.funnel = candidates.funnel
    where candidates.step > 1
        and not funnels.strict_order
        and (funnels.repeats_kinds or funnels.has_min_gaps)
),

reached_1 as (
    select
        funnel,
        user_id,
        entry_event_id,
        entry_at,
        window_closes_at,
        array[entry_event_id] as event_ids,
        array[entry_at] as step_times,
        entry_at as last_at,
        array[entry_sample_rate] as step_rates,
        breakdown_value
    from entries
    where not strict_order and step_at_a_time
),

{%- for k in range(2, max_steps + 1) %}

reached_{{ k }} as (
    select distinct on (attempts.funnel, attempts.user_id, attempts.entry_at, attempts.entry_event_id)
        attempts.funnel,
        attempts.user_id,
        attempts.entry_event_id,
        attempts.entry_at,
        attempts.window_closes_at,
        attempts.event_ids || candidates.event_id as event_ids,
        attempts.step_times || candidates.occurred_at as step_times,
        candidates.occurred_at as last_at,
        attempts.step_rates || least(attempts.step_rates[{{ k - 1 }}], candidates.sample_rate) as step_rates,
        attempts.breakdown_value
    from reached_{{ k - 1 }} as attempts
    inner join funnels on funnels.funnel = attempts.funnel
    inner join step_candidates as candidates
        on candidates.funnel = attempts.funnel
        and candidates.user_id = attempts.user_id
        and candidates.step = {{ k }}
    where candidates.occurred_at >= attempts.last_at + coalesce(funnels.min_gaps[{{ k }}], interval '0')
        and (funnels.max_gaps[{{ k }}] is null or candidates.occurred_at <= attempts.last_at + funnels.max_gaps[{{ k }}])
        and candidates.occurred_at <= attempts.window_closes_at
        and candidates.event_id <> all(attempts.event_ids)
    order by
        attempts.funnel, attempts.user_id, attempts.entry_at, attempts.entry_event_id,
        candidates.occurred_at, candidates.event_id
),

{%- endfor %}

ordered_attempts as (
    select distinct on (funnel, user_id, entry_at, entry_event_id)
        funnel,
        user_id,
        entry_event_id,
        entry_at,
        event_ids,
        step_times,
        false as stopped_by_other_event,
        step_rates,
        array(
            select trim_scale(extract(epoch from step_time - entry_at))
            from unnest(step_times) with ordinality as times (step_time, position)
            order by position
        ) as step_seconds,
        breakdown_value
    from (
        {%- for k in range(1, max_steps + 1) %}
        select * from reached_{{ k }}
        {{ "union all" if not loop.last }}
        {%- endfor %}
    ) as reached
    order by funnel, user_id, entry_at, entry_event_id, cardinality(event_ids) desc
),

-- strict mode: each strict funnel's users' whole event sequence
strict_step_kinds as (
    select
        steps.funnel,
        steps.channel,
        steps.event,
        min(steps.step) as lowest_step
    from steps
    inner join funnels on funnels.funnel = steps.funnel
    where funnels.strict_order
    group by steps.funnel, steps.channel, steps.event
),

strict_users as (
    select distinct
        funnel,
        user_id
    from entries
    where strict_order
),

strict_sequence as (
    select
        strict_users.funnel,
        events.user_id,
        events.event_id,
        events.channel,
        events.event,
        events.occurred_at,
        {%- for j in range(1, max_steps) %}
        lead(events.event_id, {{ j }}) over user_sequence as next_event_id_{{ j }},
        lead(events.channel, {{ j }}) over user_sequence as next_channel_{{ j }},
        lead(events.event, {{ j }}) over user_sequence as next_event_{{ j }},
        lead(events.occurred_at, {{ j }}) over user_sequence as next_at_{{ j }},
        lead(events.sample_rate, {{ j }}) over user_sequence as next_rate_{{ j }},
        {%- endfor %}
        lead(events.event_id, {{ max_steps }}) over user_sequence as next_event_id_{{ max_steps }}
    from {{ arrivals }} as events
    inner join strict_users on strict_users.user_id = events.user_id
    left join strict_step_kinds
        on strict_step_kinds.funnel = strict_users.funnel
        and strict_step_kinds.channel = events.channel
        and strict_step_kinds.event = events.event
    {%- if bounds is not none %}
    where {{ funnel_read_filter('events.occurred_at', read_from, window_from, read_to) }}
    {%- endif %}
    window user_sequence as (
        partition by strict_users.funnel, events.user_id
        order by events.occurred_at, coalesce(strict_step_kinds.lowest_step, 0), events.event_id
    )
),

strict_step_columns as (
    select
        funnel
        {%- for k in range(2, max_steps + 1) %},
        max(channel) filter (where step = {{ k }}) as channel_{{ k }},
        max(event) filter (where step = {{ k }}) as event_{{ k }},
        max(min_gap) filter (where step = {{ k }}) as min_gap_{{ k }},
        max(max_gap) filter (where step = {{ k }}) as max_gap_{{ k }}
        {%- endfor %}
    from steps
    group by funnel
),

strict_matched as (
    select
        entries.funnel,
        entries.user_id,
        entries.entry_event_id,
        entries.entry_at,
        entries.window_closes_at,
        entries.entry_sample_rate,
        entries.breakdown_value,
        {%- for j in range(1, max_steps) %}
        seq.next_event_id_{{ j }},
        seq.next_at_{{ j }},
        seq.next_rate_{{ j }},
        {%- endfor %}
        seq.next_event_id_{{ max_steps }},
        {%- for k in range(2, max_steps + 1) %}
        {%- set previous_at = 'entries.entry_at' if k == 2 else 'seq.next_at_' ~ (k - 2) %}
        (
            seq.next_channel_{{ k - 1 }} = kinds.channel_{{ k }}
            and seq.next_event_{{ k - 1 }} = kinds.event_{{ k }}
            and seq.next_at_{{ k - 1 }} <= entries.window_closes_at
            and seq.next_at_{{ k - 1 }} >= {{ previous_at }} + coalesce(kinds.min_gap_{{ k }}, interval '0')
            and (kinds.max_gap_{{ k }} is null or seq.next_at_{{ k - 1 }} <= {{ previous_at }} + kinds.max_gap_{{ k }})
        ) as fits_{{ k }}{{ "," if not loop.last }}
        {%- endfor %}
    from entries
    inner join strict_sequence as seq
        on seq.funnel = entries.funnel
        and seq.user_id = entries.user_id
        and seq.event_id = entries.entry_event_id
        and seq.occurred_at = entries.entry_at
    inner join strict_step_columns as kinds on kinds.funnel = entries.funnel
    where entries.strict_order
),

strict_attempts as (
    select
        funnel,
        user_id,
        entry_event_id,
        entry_at,
        event_ids,
        step_times,
        -- stopped before the last step although another event followed the last matched one (with a
        -- limit, possibly an event of the next step's kind outside it)
        depth < steps_total and next_after_last is not null as stopped_by_other_event,
        step_rates,
        array(
            select trim_scale(extract(epoch from step_time - entry_at))
            from unnest(step_times) with ordinality as times (step_time, position)
            order by position
        ) as step_seconds,
        breakdown_value
    from (
        select
            strict_matched.*,
            funnels.steps_total,
            case
                {%- for depth in range(max_steps, 1, -1) %}
                when {% for k in range(2, depth + 1) %}coalesce(fits_{{ k }}, false){{ " and " if not loop.last }}{% endfor %} then {{ depth }}
                {%- endfor %}
                else 1
            end as depth
        from strict_matched
        inner join funnels on funnels.funnel = strict_matched.funnel
    ) as with_depth
    cross join lateral (
        select
            array[entry_event_id{% for k in range(2, max_steps + 1) %}, case when depth >= {{ k }} then next_event_id_{{ k - 1 }} end{% endfor %}] as all_event_ids,
            array[entry_at{% for k in range(2, max_steps + 1) %}, case when depth >= {{ k }} then next_at_{{ k - 1 }} end{% endfor %}] as all_step_times,
            -- the running minimum of the filled steps' rates
            array[entry_sample_rate{% for k in range(2, max_steps + 1) %}, case when depth >= {{ k }} then least(entry_sample_rate{% for j in range(1, k) %}, next_rate_{{ j }}{% endfor %}) end{% endfor %}] as all_step_rates,
            case depth
                {%- for k in range(1, max_steps + 1) %}
                when {{ k }} then next_event_id_{{ k }}
                {%- endfor %}
            end as next_after_last
    ) as next_events
    cross join lateral (
        select
            all_event_ids[1:depth] as event_ids,
            all_step_times[1:depth] as step_times,
            all_step_rates[1:depth] as step_rates
    ) as matched
),

attempts as (
    select * from chain_attempts
    union all
    select * from ordered_attempts
    union all
    select * from strict_attempts
),

-- an exclusion event strictly between the attempt's match of after_step and its match of before_step,
-- or the window's end when before_step was not matched; an attempt that never matched after_step
-- has no such span
excluded as (
    select
        attempts.funnel,
        attempts.user_id,
        attempts.entry_at,
        attempts.entry_event_id
    from attempts
    inner join funnels on funnels.funnel = attempts.funnel
    where exists (
        select
        from exclusion_events
        where exclusion_events.funnel = attempts.funnel
            and exclusion_events.user_id = attempts.user_id
            and cardinality(attempts.step_times) >= exclusion_events.after_step
            and exclusion_events.occurred_at > attempts.step_times[exclusion_events.after_step]
            and exclusion_events.occurred_at
                < coalesce(attempts.step_times[exclusion_events.before_step], attempts.entry_at + funnels.window_length)
    )
),

data_end as (
    select
        {%- if bounds is none %}
        {{ product_data_end(none, none, none) }} as latest_event_at
        {%- else %}
        {{ product_data_end(read_from, bounds, modules.datetime.timedelta(minutes=max_window_minutes)) }} as latest_event_at
        {%- endif %}
),

flagged as (
    select
        attempts.*,
        excluded.funnel is not null as is_excluded
    from attempts
    left join excluded
        on excluded.funnel = attempts.funnel
        and excluded.user_id = attempts.user_id
        and excluded.entry_at = attempts.entry_at
        and excluded.entry_event_id = attempts.entry_event_id
),

final as (
    select
        attempts.funnel,
        attempts.user_id,
        attempts.entry_event_id,
        attempts.entry_at,
        {{ utc_date('attempts.entry_at') }} as entry_day,
        funnels.strict_order,
        funnels.window_minutes,
        funnels.steps_total,
        cardinality(attempts.event_ids) as depth,
        cardinality(attempts.event_ids) = funnels.steps_total as converted,
        to_jsonb(attempts.event_ids) as matched_event_ids,
        to_jsonb(attempts.step_seconds) as step_seconds,
        to_jsonb(attempts.step_rates) as step_inclusion_rates,
        attempts.entry_at + funnels.window_length as window_closes_at,
        attempts.stopped_by_other_event,
        -- the next step can still come until the window closes or, sooner, until the next step's maximum gap
        -- after the last match has passed (least ignores a null gap)
        cardinality(attempts.event_ids) < funnels.steps_total
            and not attempts.stopped_by_other_event
            and least(
                attempts.entry_at + funnels.window_length,
                attempts.step_times[cardinality(attempts.step_times)] + funnels.max_gaps[cardinality(attempts.event_ids) + 1]
            ) > data_end.latest_event_at as is_immature,
        attempts.is_excluded,
        attempts.breakdown_value,
        -- excluded attempts are dropped before the choice: they form their own partition, never chosen
        not attempts.is_excluded and row_number() over (
            partition by attempts.funnel, attempts.user_id, {{ utc_date('attempts.entry_at') }}, attempts.is_excluded
            order by cardinality(attempts.event_ids) desc, attempts.entry_at, attempts.entry_event_id
        ) = 1 as is_chosen
    from flagged as attempts
    inner join funnels on funnels.funnel = attempts.funnel
    cross join data_end
)

select * from final
