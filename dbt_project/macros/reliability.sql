{#-
  Message reliability per channel for the windows [S, E) of one grain (DESIGN.md item 3).
  fct_channel_reliability_{hourly,daily,weekly} are this macro at their grain.

  * recorded = coalesce(received_at, created_at) (stg_chat__message_samples.recorded_at);
  * counted receivers R_c: a sample in c recorded before S and one recorded at or after E,
    looked for among the samples sent from one period before S to one period after E (the
    DAG's default lag is one period, so that is the data a run can see; bounding it also makes
    a rerun give the same result however much later data has arrived);
  * messages M_c: distinct message ids of c sent in [S, E) seen by a counted receiver;
  * total = |M_c| * |R_c|, missing = total - distinct (receiver, message) deliveries;
    reliability = 1 - missing / total in [0, 1], null when total = 0;
  * status_compat_reliability: the original status-im formula over the receivers with a
    sample recorded at or after E (any channel): per receiver the count of its samples of c
    sent in the window, missing = sum(max - count), total = sum(count), 1 - missing / total.

  Only the windows of the run are written, but the margins on both sides are read.
-#}
{% macro channel_reliability(grain) -%}
{%- set period = grain_interval(grain) -%}
{%- set bounds = window_period_bounds(grain) -%}

with samples as (
    select
        channel_id,
        message_id,
        receiver_public_key,
        sent_at,
        recorded_at
    from {{ ref('stg_chat__message_samples') }}
    where {{ window_filter('sent_at', grain, 1) }}
),

bucketed as (
    select
        {{ period_start('sent_at', grain) }} as bucket_start,
        channel_id,
        message_id,
        receiver_public_key,
        recorded_at
    from samples
),

-- the windows to compute: the periods of the run window, or of all the data on a full refresh
windows as (
    {%- if bounds is none %}
    select generate_series(min(bucket_start), max(bucket_start), {{ period }}) as window_start
    from bucketed
    {%- else %}
    select generate_series(
        {{ timestamp_literal(bounds.lower) }},
        {{ timestamp_literal(bounds.upper) }} - {{ period }},
        {{ period }}
    ) as window_start
    {%- endif %}
),

-- first and last recording per receiver, channel and sending period
presence as (
    select
        bucket_start,
        channel_id,
        receiver_public_key,
        min(recorded_at) as first_recorded_at,
        max(recorded_at) as last_recorded_at
    from bucketed
    group by bucket_start, channel_id, receiver_public_key
),

-- each period's presence serves the window before it, its own, and the one after it
presence_near_windows as (
    select
        windows.window_start,
        presence.channel_id,
        presence.receiver_public_key,
        presence.first_recorded_at,
        presence.last_recorded_at
    from presence
    cross join (values (-1), (0), (1)) as offsets (periods)
    inner join windows
        on windows.window_start = presence.bucket_start + offsets.periods * {{ period }}
),

counted_receivers as (
    select
        window_start,
        channel_id,
        receiver_public_key
    from presence_near_windows
    group by window_start, channel_id, receiver_public_key
    having
        min(first_recorded_at) < window_start
        and max(last_recorded_at) >= window_start + {{ period }}
),

window_samples as (
    select
        bucketed.bucket_start as window_start,
        bucketed.channel_id,
        bucketed.message_id,
        bucketed.receiver_public_key
    from bucketed
    inner join windows on windows.window_start = bucketed.bucket_start
),

-- one delivery per counted receiver and message, however many samples record it
deliveries as (
    select distinct
        window_samples.window_start,
        window_samples.channel_id,
        window_samples.message_id,
        window_samples.receiver_public_key
    from window_samples
    inner join counted_receivers
        on counted_receivers.window_start = window_samples.window_start
        and counted_receivers.channel_id = window_samples.channel_id
        and counted_receivers.receiver_public_key = window_samples.receiver_public_key
),

delivery_counts as (
    select
        window_start,
        channel_id,
        count(distinct message_id) as messages,
        count(*) as delivered
    from deliveries
    group by window_start, channel_id
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
        count(*) as samples,
        count(distinct receiver_public_key) as receivers_seen
    from window_samples
    group by window_start, channel_id
),

-- status-im compatibility: receivers with a sample (any channel) recorded at or after E
receivers_after_end as (
    select
        windows.window_start,
        presence.receiver_public_key
    from presence
    cross join (values (0), (1)) as offsets (periods)
    inner join windows
        on windows.window_start = presence.bucket_start - offsets.periods * {{ period }}
    group by windows.window_start, presence.receiver_public_key
    having max(presence.last_recorded_at) >= windows.window_start + {{ period }}
),

compat_receiver_counts as (
    select
        window_samples.window_start,
        window_samples.channel_id,
        window_samples.receiver_public_key,
        count(distinct window_samples.message_id) as samples
    from window_samples
    inner join receivers_after_end
        on receivers_after_end.window_start = window_samples.window_start
        and receivers_after_end.receiver_public_key = window_samples.receiver_public_key
    group by window_samples.window_start, window_samples.channel_id, window_samples.receiver_public_key
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
