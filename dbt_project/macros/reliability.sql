{#-
  Message reliability per channel for the windows [S, E) of one grain (docs/DESIGN.md,
  "Reliability"). fct_channel_reliability_{hourly,daily,weekly} are this macro at their grain.

  * recorded = coalesce(received_at, created_at) (stg_chat__message_samples.recorded_at);
  * counted receivers R_c: a sample of c recorded before S and one recorded at or after E, among
    the samples of c sent in [S - lookback, E + lookahead) (vars reliability_lookback_days,
    reliability_lookahead_windows);
  * messages M_c: distinct message ids of c sent in [S, E) seen by a counted receiver;
  * total = |M_c| * |R_c|, missing = total - distinct (receiver, message) deliveries;
    reliability = 1 - missing / total in [0, 1], null when total = 0;
  * status_compat_reliability: the original status-im rule over the receivers with a sample of
    any channel recorded at or after E among the samples sent in [S, E + lookahead).

  Both rules need only, per sending hour, channel and receiver, the first and last recording
  (min and max compose over hours) and, inside the window, the sample count. A run takes the
  look-back before its windows from int_message_presence_hourly, which earlier builds left and
  which outlives raw: the cost grows with the window, not with the look-back. The hourly mart
  reads raw for [S, E + lookahead); the daily and weekly marts read raw once for the window's
  message ids and take the presence and sample counts of the run's hours from the summary, which
  the same build has just rewritten, so the summary's one pass over the day's samples serves both.
-#}

{#- Plans without JIT or nested loops: the CTEs have no statistics, and a nested loop over
    the receivers' islands, estimated at a few rows, costs seconds when there are thousands.
    work_mem for the hash aggregates over a day's samples (a million rows, as many groups in
    window_messages): at the default 4 MB they spill in dozens of batches, which costs more than
    the aggregation itself. For days and weeks, parallel_tuple_cost at a tenth of the default, as
    in the presence summary: the planner guesses five times the message ids a day has, prices the
    partial aggregates' rows accordingly and keeps a serial aggregate that takes half as long
    again. An hour's few samples gain nothing from workers. -#}
{% macro reliability_planner_settings(grain='hour') -%}
    {%- set settings = ["set local jit = off", "set local enable_nestloop = off", "set local work_mem = '256MB'"] -%}
    {%- if grain != 'hour' -%}
        {%- do settings.append("set local parallel_tuple_cost = 0.01") -%}
    {%- endif -%}
    {{ return(settings) }}
{%- endmacro %}

{#- var('reliability_lookback_days'), validated: a whole number of days, 0 or more. -#}
{% macro reliability_lookback_days() -%}
    {{ return(telemetry_whole_number_var('reliability_lookback_days', 7)) }}
{%- endmacro %}

{#- var('reliability_lookahead_windows'), validated: a whole number of window lengths, 0 or more. -#}
{% macro reliability_lookahead_windows() -%}
    {{ return(telemetry_whole_number_var('reliability_lookahead_windows', 1)) }}
{%- endmacro %}

{% macro telemetry_whole_number_var(name, default) -%}
    {%- set raw = var(name, default) -%}
    {%- set text = raw | string -%}
    {%- if not modules.re.match('^[0-9]+$', text) -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ "=" ~ raw ~ " must be a whole number, 0 or more") }}
    {%- endif -%}
    {{ return(text | int) }}
{%- endmacro %}

{#- SQL interval literal of a number of hours (fixed lengths, whatever the session time zone). -#}
{% macro hours_interval(hours) -%}
    interval '{{ hours }} hours'
{%- endmacro %}

{#- Per sending hour, channel and receiver: the first and the last recording of `samples`, and how
    many there are. -#}
{% macro message_presence_by_hour(samples) -%}
    select
        {{ utc_period_start('sent_at', 'hour') }} as sent_hour,
        channel_id,
        receiver_public_key,
        min(recorded_at) as first_recorded_at,
        max(recorded_at) as last_recorded_at,
        count(*) as samples
    from {{ samples }}
    group by 1, 2, 3
{%- endmacro %}

{% macro channel_reliability(grain) -%}
{%- set period = grain_interval(grain) -%}
{%- set period_hours = {'hour': 1, 'day': 24, 'week': 168}[grain] -%}
{%- set bounds = window_period_bounds(grain) -%}
{%- set ahead_windows = reliability_lookahead_windows() -%}
{%- set lookback_hours = reliability_lookback_days() * 24 -%}
{#- a window S reads the samples sent in [S - lookback, S + reach) -#}
{%- set lookback = hours_interval(lookback_hours) -%}
{%- set reach = hours_interval(period_hours * (1 + ahead_windows)) -%}
{#- The presence rows read from raw are per sending hour, or per period when the look-back is whole
    periods: every hour h of a period p then gives the same window range (h - reach, h + lookback]
    cut to the grid, the range of p itself, and the spans below depend on the recordings only
    through min and max, so one row per period gives the same union of spans as its hours (a day
    costs one row per receiver, not 24). A full refresh keeps hours: it matches them against the
    summary's. -#}
{%- set presence_grain = grain if bounds is not none and lookback_hours % period_hours == 0 else 'hour' -%}

{#- the look-ahead rows read from raw give presence only; the windows end at window_upper -#}
{%- set window_upper = none if bounds is none else timestamp_literal(bounds.upper) %}

{#- Day and week windows take the presence and sample counts of the run's own hours from the
    presence summary, which this build has just rewritten from the same raw rows (it is a parent
    of every reliability mart and tagged with every cadence): of the million samples of a day, raw
    is then read once, for the message ids. Raw serves the hours of the windows outside the run's
    own (a run window that does not start or end on a period bound) and the look-ahead. An hour
    counts only when raw still holds samples sent in it, as it does when read from raw: a stored
    hour whose raw rows were dropped was not rewritten. The hourly mart keeps reading its hour from
    raw: one hour's per-receiver aggregate is small beside the look-back it takes from the summary,
    and the mart then does not depend on the summary's rows for the hour it computes. -#}
{%- set window_from_summary = bounds is not none and grain != 'hour' -%}
{%- if window_from_summary -%}
    {%- set run_hours = window_period_bounds('hour') -%}
    {%- set reach_end = bounds.upper + grain_timedelta(grain) * ahead_windows -%}
    {%- set raw_ranges = [] -%}
    {%- if run_hours.lower > bounds.lower -%}
        {%- do raw_ranges.append('(sent_at >= ' ~ timestamp_literal(bounds.lower) ~ ' and sent_at < ' ~ timestamp_literal(run_hours.lower) ~ ')') -%}
    {%- endif -%}
    {%- if run_hours.upper < reach_end -%}
        {%- do raw_ranges.append('(sent_at >= ' ~ timestamp_literal(run_hours.upper) ~ ' and sent_at < ' ~ timestamp_literal(reach_end) ~ ')') -%}
    {%- endif -%}
{%- endif %}

-- not materialized: each aggregate below scans the (pruned) partitions itself, which is cheaper
-- than writing a million rows to a tuplestore and reading them back
with samples as not materialized (
    select
        channel_id,
        message_id,
        receiver_public_key,
        sent_at,
        recorded_at
    from {{ ref('stg_chat__message_samples') }}
    {%- if bounds is not none %}
    where sent_at >= {{ timestamp_literal(bounds.lower) }}
        and sent_at < {{ timestamp_literal(bounds.upper + grain_timedelta(grain) * ahead_windows) }}
    {%- endif %}
),

{%- if window_from_summary %}

-- per sending hour, channel and message id: its copies and sending times (the hours show which
-- of the run's hours raw holds)
message_groups as (
    select
        {{ utc_period_start('sent_at', 'hour') }} as sent_hour,
        channel_id,
        message_id,
        count(*) as copies,
        min(sent_at) as first_sent_at,
        max(sent_at) as last_sent_at
    from samples
    where sent_at < {{ window_upper }}
    group by 1, 2, 3
),

-- one row per window, channel and message id; different sent_at values are the only way one
-- receiver can hold a message twice under raw's unique key
window_messages as (
    select
        {{ utc_period_start('sent_hour', grain) }} as window_start,
        channel_id,
        message_id,
        sum(copies)::bigint as copies,
        min(first_sent_at) < max(last_sent_at) as sent_apart
    from message_groups
    group by 1, 2, 3
),

-- per period (above), channel and receiver: sample counts and presence, from raw outside the
-- run's hours and from the summary inside them
read_groups as (
    select
        {{ utc_period_start('sent_at', presence_grain) }} as sent_hour,
        channel_id,
        receiver_public_key,
        count(*) as samples,
        min(recorded_at) as first_recorded_at,
        max(recorded_at) as last_recorded_at
    from samples
    where {{ raw_ranges | join(' or ') if raw_ranges else 'false' }}
    group by 1, 2, 3
    union all
    select
        {{ utc_period_start('sent_hour', presence_grain) }} as sent_hour,
        channel_id,
        receiver_public_key,
        sum(samples)::bigint as samples,
        min(first_recorded_at) as first_recorded_at,
        max(last_recorded_at) as last_recorded_at
    from {{ ref('int_message_presence_hourly') }}
    where sent_hour >= {{ timestamp_literal(run_hours.lower) }}
        and sent_hour < {{ timestamp_literal(run_hours.upper) }}
        and sent_hour in (select sent_hour from message_groups)
    group by 1, 2, 3
),
{%- else %}

-- The samples read are aggregated twice, each a hash aggregate over a scan of its own: per
-- sending hour (or period, above), channel and receiver, the presence rows and sample counts; per
-- window, channel and message id, its copies and whether they carry different sent_at values,
-- the only way one receiver can hold a message twice under raw's unique key (the look-ahead's
-- messages are not read: they only say who was heard). One union of both lets PostgreSQL run
-- them side by side (a parallel append), and two scans cost less than one aggregate with both
-- grouping sets, which evaluates every aggregate for both.
sample_groups as (
    select
        false as by_message,
        {{ utc_period_start('sent_at', presence_grain) }} as sent_hour,
        channel_id,
        receiver_public_key,
        null::text as message_id,
        count(*) as copies,
        min(recorded_at) as first_recorded_at,
        max(recorded_at) as last_recorded_at,
        null::boolean as sent_apart
    from samples
    group by 2, 3, 4
    union all
    select
        true as by_message,
        {{ utc_period_start('sent_at', grain) }} as sent_hour,
        channel_id,
        null::text as receiver_public_key,
        message_id,
        count(*) as copies,
        null::timestamptz as first_recorded_at,
        null::timestamptz as last_recorded_at,
        min(sent_at) < max(sent_at) as sent_apart
    from samples
    {%- if bounds is not none %}
    where sent_at < {{ window_upper }}
    {%- endif %}
    group by 2, 3, 5
),

read_groups as (
    select
        sent_hour,
        channel_id,
        receiver_public_key,
        copies as samples,
        first_recorded_at,
        last_recorded_at
    from sample_groups
    where not by_message
),

-- one row per window, channel and message id
window_messages as (
    select
        sent_hour as window_start,
        channel_id,
        message_id,
        copies,
        sent_apart
    from sample_groups
    where by_message
),
{%- endif %}

-- presence of the hours read from raw above
read_presence as (
    select
        sent_hour,
        channel_id,
        receiver_public_key,
        first_recorded_at,
        last_recorded_at
    from read_groups
),

-- the windows to compute: the periods of the run window, or of all the data on a full refresh
windows as (
    {%- if bounds is none %}
    select generate_series(
        min({{ utc_period_start('sent_hour', grain) }}),
        max({{ utc_period_start('sent_hour', grain) }}),
        {{ period }}
    ) as window_start
    from read_presence
    {%- else %}
    select generate_series(
        {{ timestamp_literal(bounds.lower) }},
        {{ timestamp_literal(bounds.upper) }} - {{ period }},
        {{ period }}
    ) as window_start
    {%- endif %}
),

{%- if bounds is none %}

read_hours as (
    select distinct sent_hour
    from read_presence
),

-- on a full refresh, the summary serves the hours raw no longer holds
stored_presence as (
    select
        stored.sent_hour,
        stored.channel_id,
        stored.receiver_public_key,
        stored.first_recorded_at,
        stored.last_recorded_at
    from {{ ref('int_message_presence_hourly') }} as stored
    left join read_hours on read_hours.sent_hour = stored.sent_hour
    where read_hours.sent_hour is null
),

presence as (
    select * from read_presence
    union all
    select * from stored_presence
),
{%- else %}

-- the look-back before the run's first window, as earlier builds summarized it
stored_presence as (
    select
        sent_hour,
        channel_id,
        receiver_public_key,
        first_recorded_at,
        last_recorded_at
    from {{ ref('int_message_presence_hourly') }}
    where sent_hour >= {{ timestamp_literal(bounds.lower) }} - {{ lookback }}
        and sent_hour < {{ timestamp_literal(bounds.lower) }}
),
{%- endif %}

{#- the presence rows whose spans are taken one by one: all of them on a full refresh; else
    those read from raw, the stored hours before the run being summed up below (stored_spans) -#}
{%- set row_source = 'presence' if bounds is none else 'read_presence' %}

-- A presence row of hour h lies in the range of the windows S with S - lookback <= h < S + reach,
-- i.e. the window starts in (h - reach, h + lookback]. It shows the receiver before S for those
-- with S > first_recorded_at too, and at or after E = S + period for those with
-- S <= last_recorded_at - period. Each such set is a span of window starts (grid points).
row_spans as (
    select
        channel_id,
        receiver_public_key,
        'before' as side,
        {{ utc_period_start('greatest(sent_hour - ' ~ reach ~ ', first_recorded_at)', grain) }} + {{ period }} as first_window,
        {{ utc_period_start('sent_hour + ' ~ lookback, grain) }} as last_window
    from {{ row_source }}
    union all
    select
        channel_id,
        receiver_public_key,
        'after' as side,
        {{ utc_period_start('sent_hour - ' ~ reach, grain) }} + {{ period }} as first_window,
        {{ utc_period_start('least(sent_hour + ' ~ lookback ~ ', last_recorded_at - ' ~ period ~ ')', grain) }} as last_window
    from {{ row_source }}
),

{%- if bounds is none %}

presence_spans as (
    select * from row_spans
),
{%- else %}
{%- set first_window = timestamp_literal(bounds.lower) %}

-- Every stored hour h lies before the run's first window F, so each of its spans that reaches F
-- starts at or before F, except a 'before' span of a row first recorded at or after F. Cut at F
-- (earlier windows are not computed), those spans all start at F and their union is one span
-- per receiver and side, from F to the latest end: the look-back costs one aggregate.
stored_ends as (
    select
        channel_id,
        receiver_public_key,
        {{ utc_period_start('max(sent_hour) filter (where first_recorded_at < ' ~ first_window ~ ') + ' ~ lookback, grain) }}
            as before_until,
        {{ utc_period_start('max(least(sent_hour + ' ~ lookback ~ ', last_recorded_at - ' ~ period ~ '))', grain) }}
            as after_until
    from stored_presence
    group by channel_id, receiver_public_key
),

stored_spans as (
    select
        stored_ends.channel_id,
        stored_ends.receiver_public_key,
        sides.side,
        {{ first_window }} as first_window,
        sides.last_window
    from stored_ends
    cross join lateral (
        values ('before', stored_ends.before_until), ('after', stored_ends.after_until)
    ) as sides (side, last_window)
    where sides.last_window is not null
    union all
    select
        channel_id,
        receiver_public_key,
        'before' as side,
        {{ utc_period_start('first_recorded_at', grain) }} + {{ period }} as first_window,
        {{ utc_period_start('sent_hour + ' ~ lookback, grain) }} as last_window
    from stored_presence
    where first_recorded_at >= {{ first_window }}
),

presence_spans as (
    select * from row_spans
    union all
    select * from stored_spans
),
{%- endif %}

-- merge each side's spans into disjoint islands (sorted by start, a span opens a new island when
-- it starts after the window following the end of every earlier one), so that a receiver heard
-- in many hours costs one sort instead of one row per hour and window
span_openings as (
    select
        *,
        case
            when first_window <= max(last_window) over (
                partition by channel_id, receiver_public_key, side
                order by first_window, last_window
                rows between unbounded preceding and 1 preceding
            ) + {{ period }} then 0
            else 1
        end as opens_island
    from presence_spans
    where first_window <= last_window
),

islands as (
    select
        channel_id,
        receiver_public_key,
        side,
        island,
        min(first_window) as first_window,
        max(last_window) as last_window
    from (
        select
            *,
            sum(opens_island) over (
                partition by channel_id, receiver_public_key, side
                order by first_window, last_window
                rows unbounded preceding
            ) as island
        from span_openings
    ) as numbered
    group by channel_id, receiver_public_key, side, island
),

-- heard before and after: where a 'before' island meets an 'after' island (disjoint islands on
-- each side make disjoint overlaps, so no window is counted twice)
counted_spans as (
    select
        heard_before.channel_id,
        heard_before.receiver_public_key,
        greatest(heard_before.first_window, heard_after.first_window) as first_window,
        least(heard_before.last_window, heard_after.last_window) as last_window
    from islands as heard_before
    inner join islands as heard_after
        on heard_after.channel_id = heard_before.channel_id
        and heard_after.receiver_public_key = heard_before.receiver_public_key
        and heard_after.side = 'after'
        and heard_after.first_window <= heard_before.last_window
        and heard_before.first_window <= heard_after.last_window
    where heard_before.side = 'before'
),

counted_receivers as (
    select
        windows.window_start,
        counted_spans.channel_id,
        counted_spans.receiver_public_key
    from counted_spans
    inner join windows
        on windows.window_start >= counted_spans.first_window
        and windows.window_start <= counted_spans.last_window
),

-- the message ids some receiver may hold twice (duplicate samples of one delivery under another
-- sent_at are one delivery): almost always none, and then the join below skips its scan
apart_messages as (
    select
        window_start,
        channel_id,
        message_id
    from window_messages
    where sent_apart
),

repeated_copies as (
    select
        window_start,
        channel_id,
        receiver_public_key,
        sum(copies - 1)::bigint as repeats
    from (
        select
            apart_messages.window_start,
            samples.channel_id,
            samples.receiver_public_key,
            samples.message_id,
            count(*) as copies
        from samples
        inner join apart_messages
            on apart_messages.window_start = {{ utc_period_start('samples.sent_at', grain) }}
            and apart_messages.channel_id = samples.channel_id
            and apart_messages.message_id = samples.message_id
        {%- if bounds is not none %}
        where samples.sent_at < {{ window_upper }}
        {%- endif %}
        group by apart_messages.window_start, samples.channel_id, samples.receiver_public_key, samples.message_id
        having count(*) > 1
    ) as held_twice
    group by window_start, channel_id, receiver_public_key
),

-- per window, channel and receiver: its samples and its distinct message ids
receiver_window_counts as (
    select
        seen.window_start,
        seen.channel_id,
        seen.receiver_public_key,
        seen.samples - coalesce(max(repeated_copies.repeats), 0) as messages,
        seen.samples
    from (
        select
            {{ utc_period_start('sent_hour', grain) }} as window_start,
            channel_id,
            receiver_public_key,
            sum(samples)::bigint as samples
        from read_groups
        {%- if bounds is not none %}
        where sent_hour < {{ window_upper }}
        {%- endif %}
        group by 1, 2, 3
    ) as seen
    left join repeated_copies
        on repeated_copies.window_start = seen.window_start
        and repeated_copies.channel_id = seen.channel_id
        and repeated_copies.receiver_public_key = seen.receiver_public_key
    group by seen.window_start, seen.channel_id, seen.receiver_public_key, seen.samples
),

-- the receivers seen in a window that do not count there: usually few or none. Materialized, so
-- that the join below finds it empty before it scans the samples (inlined, the planner may join
-- the samples to the receivers first and scan them all to remove every row)
uncounted_receivers as materialized (
    select
        receiver_window_counts.window_start,
        receiver_window_counts.channel_id,
        receiver_window_counts.receiver_public_key
    from receiver_window_counts
    left join counted_receivers
        on counted_receivers.window_start = receiver_window_counts.window_start
        and counted_receivers.channel_id = receiver_window_counts.channel_id
        and counted_receivers.receiver_public_key = receiver_window_counts.receiver_public_key
    where counted_receivers.receiver_public_key is null
),

-- their copies of each message id; the scan is skipped when every receiver seen counts
uncounted_copies as (
    select
        uncounted_receivers.window_start,
        samples.channel_id,
        samples.message_id,
        count(*) as copies
    from samples
    inner join uncounted_receivers
        on uncounted_receivers.window_start = {{ utc_period_start('samples.sent_at', grain) }}
        and uncounted_receivers.channel_id = samples.channel_id
        and uncounted_receivers.receiver_public_key = samples.receiver_public_key
    {%- if bounds is not none %}
    where samples.sent_at < {{ window_upper }}
    {%- endif %}
    group by uncounted_receivers.window_start, samples.channel_id, samples.message_id
),

-- M_c: the message ids with a copy at a counted receiver, i.e. more copies than the uncounted
-- receivers hold
message_counts as (
    select
        window_messages.window_start,
        window_messages.channel_id,
        count(*) as messages
    from window_messages
    left join uncounted_copies
        on uncounted_copies.window_start = window_messages.window_start
        and uncounted_copies.channel_id = window_messages.channel_id
        and uncounted_copies.message_id = window_messages.message_id
    where window_messages.copies > coalesce(uncounted_copies.copies, 0)
    group by window_messages.window_start, window_messages.channel_id
),

-- the distinct (receiver, message) deliveries of counted receivers: the sum of their
-- per-receiver distinct message counts, one row per receiver
delivered_counts as (
    select
        receiver_window_counts.window_start,
        receiver_window_counts.channel_id,
        sum(receiver_window_counts.messages)::bigint as delivered
    from receiver_window_counts
    inner join counted_receivers
        on counted_receivers.window_start = receiver_window_counts.window_start
        and counted_receivers.channel_id = receiver_window_counts.channel_id
        and counted_receivers.receiver_public_key = receiver_window_counts.receiver_public_key
    group by receiver_window_counts.window_start, receiver_window_counts.channel_id
),

delivery_counts as (
    select
        delivered_counts.window_start,
        delivered_counts.channel_id,
        message_counts.messages,
        delivered_counts.delivered
    from delivered_counts
    inner join message_counts
        on message_counts.window_start = delivered_counts.window_start
        and message_counts.channel_id = delivered_counts.channel_id
),

receiver_counts as (
    select
        window_start,
        channel_id,
        count(*) as receivers
    from counted_receivers
    group by window_start, channel_id
),

window_activity as (
    select
        window_start,
        channel_id,
        sum(samples)::bigint as samples,
        count(*) as receivers_seen
    from receiver_window_counts
    group by window_start, channel_id
),

-- status-im compatibility: receivers with a sample of any channel recorded at or after E among
-- the samples sent in [S, E + lookahead) (never a stored hour: those lie before the run);
-- an hour h is in that range for the windows period_start(h) - k * period, k = 0 .. lookahead
receivers_after_end as (
    select
        windows.window_start,
        presence.receiver_public_key
    from {{ row_source }} as presence
    cross join generate_series(0, {{ ahead_windows }}) as offsets (periods)
    inner join windows
        on windows.window_start = {{ utc_period_start('presence.sent_hour', grain) }} - offsets.periods * {{ period }}
    group by windows.window_start, presence.receiver_public_key
    having max(presence.last_recorded_at) >= windows.window_start + {{ period }}
),

-- a receiver's samples of the channel in the window: one per message id, as above
compat_receiver_counts as (
    select
        receiver_window_counts.window_start,
        receiver_window_counts.channel_id,
        receiver_window_counts.receiver_public_key,
        receiver_window_counts.messages as samples
    from receiver_window_counts
    inner join receivers_after_end
        on receivers_after_end.window_start = receiver_window_counts.window_start
        and receivers_after_end.receiver_public_key = receiver_window_counts.receiver_public_key
),

compat as (
    select
        window_start,
        channel_id,
        sum(channel_max - samples) as compat_missing,
        sum(samples) as compat_total
    from (
        select
            *,
            max(samples) over (partition by window_start, channel_id) as channel_max
        from compat_receiver_counts
    ) as with_max
    group by window_start, channel_id
),

channels as (
    select
        window_start,
        channel_id
    from window_activity
    union
    select
        window_start,
        channel_id
    from receiver_counts
),

measures as (
    select
        channels.window_start,
        channels.channel_id,
        coalesce(delivery_counts.messages, 0) as messages,
        coalesce(receiver_counts.receivers, 0) as receivers,
        coalesce(delivery_counts.messages, 0) * coalesce(receiver_counts.receivers, 0) as total,
        coalesce(delivery_counts.delivered, 0) as delivered,
        coalesce(window_activity.samples, 0) as samples,
        coalesce(window_activity.receivers_seen, 0) as receivers_seen,
        compat.compat_missing,
        compat.compat_total
    from channels
    left join delivery_counts
        on delivery_counts.window_start = channels.window_start
        and delivery_counts.channel_id = channels.channel_id
    left join receiver_counts
        on receiver_counts.window_start = channels.window_start
        and receiver_counts.channel_id = channels.channel_id
    left join window_activity
        on window_activity.window_start = channels.window_start
        and window_activity.channel_id = channels.channel_id
    left join compat
        on compat.window_start = channels.window_start
        and compat.channel_id = channels.channel_id
),

final as (
    select
        {{ period_value('window_start', grain) }} as {{ period_column(grain) }},
        channel_id,
        messages,
        receivers,
        total,
        delivered,
        total - delivered as missing,
        case
            when total > 0 then trim_scale(1 - (total - delivered)::numeric / total)
        end as reliability,
        samples,
        receivers_seen,
        case
            when compat_total > 0 then trim_scale(1 - compat_missing::numeric / compat_total)
        end as status_compat_reliability
    from measures
)

select * from final
{%- endmacro %}

{#- Overall reliability per window: the mean of the channels' reliability where total > 0. -#}
{% macro overall_reliability(grain) -%}
{%- set period = period_column(grain) -%}

with channel_reliability as (
    select * from {{ ref('fct_channel_reliability_' ~ {'hour': 'hourly', 'day': 'daily', 'week': 'weekly'}[grain]) }}
    where {{ period_window_filter(grain) }}
),

overall as (
    select
        {{ period }},
        count(*) as channels,
        count(*) filter (where total > 0) as channels_measured,
        sum(messages)::bigint as messages,
        sum(total)::bigint as total,
        sum(missing)::bigint as missing,
        trim_scale(avg(reliability) filter (where total > 0)) as reliability,
        trim_scale(avg(status_compat_reliability)) as status_compat_reliability
    from channel_reliability
    group by {{ period }}
),

final as (
    select
        {{ period }},
        channels,
        channels_measured,
        messages,
        total,
        missing,
        reliability,
        status_compat_reliability
    from overall
)

select * from final
{%- endmacro %}
