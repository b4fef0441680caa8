{{
    config(
        unique_key='month_start',
        tags=['monthly'],
    )
}}

{#- The month from the daily tables, never raw: minutes, samples and breach minutes add up over the days (a
    minute belongs to one day), extremes are the days' extremes, averages are the month's exact sums over the
    minutes (or observations) that carry the metric, and percentiles come from the days' merged histograms merged
    again over the month (int_host_histograms_daily), so they keep the histograms' error bound. -#}
{%- set scalars = host_scalar_metrics() %}
{%- set histograms = host_histogram_metrics() %}
{%- set thresholds = host_thresholds() %}

with days as (
    select
        *,
        {{ utc_date(period_start("day::timestamp at time zone 'UTC'", 'month')) }} as month_start
    from {{ ref('fct_host_metrics_daily') }}
    where {{ window_filter_date('day', 'month') }}
),

day_sums as (
    select
        *,
        {{ utc_date(period_start("day::timestamp at time zone 'UTC'", 'month')) }} as month_start
    from {{ ref('int_host_metric_sums_daily') }}
    where {{ window_filter_date('day', 'month') }}
),

histogram_buckets as (
    select
        {{ utc_date(period_start("day::timestamp at time zone 'UTC'", 'month')) }} as month_start,
        host_id,
        metric,
        bucket_order,
        bucket_count
    from {{ ref('int_host_histograms_daily') }}
    where {{ window_filter_date('day', 'month') }}
),

month_quantiles as (
    {{ merged_histogram_quantiles('histogram_buckets', ['host_id', 'month_start', 'metric']) }}
),

quantiles as (
    select
        host_id,
        month_start,
        {%- for metric in histograms %}
        max(p50) filter (where metric = '{{ metric }}') as {{ metric }}_p50,
        max(p95) filter (where metric = '{{ metric }}') as {{ metric }}_p95,
        max(p99) filter (where metric = '{{ metric }}') as {{ metric }}_p99{{ "," if not loop.last }}
        {%- endfor %}
    from month_quantiles
    group by host_id, month_start
),

averages as (
    select
        host_id,
        month_start,
        {%- for column, aggregates in scalars.items() if 'avg' in aggregates %}
        (sum({{ column }}_sum) / nullif(sum({{ column }}_count), 0))::double precision as {{ column }}_avg,
        {%- endfor %}
        {%- for metric in histograms %}
        sum({{ metric }}_sum) as {{ metric }}_sum{{ "," if not loop.last }}
        {%- endfor %}
    from day_sums
    group by host_id, month_start
),

extremes as (
    select
        host_id,
        month_start,
        sum(minutes_observed)::bigint as minutes_observed,
        sum(samples)::bigint as samples,
        max(cpu_percent_peak) as cpu_percent_peak,
        max(memory_total_bytes) as memory_total_bytes,
        {%- for column, aggregates in scalars.items() %}
        {%- for aggregate in aggregates if aggregate != 'avg' %}
        {{ aggregate }}({{ column }}_{{ aggregate }}) as {{ column }}_{{ aggregate }},
        {%- endfor %}
        {%- endfor %}
        {%- for metric in histograms %}
        sum({{ metric }}_count)::bigint as {{ metric }}_count,
        min({{ metric }}_min) as {{ metric }}_min,
        max({{ metric }}_max) as {{ metric }}_max,
        {%- endfor %}
        {%- for name in thresholds %}
        sum({{ name }}_warning_minutes)::bigint as {{ name }}_warning_minutes,
        sum({{ name }}_critical_minutes)::bigint as {{ name }}_critical_minutes{{ "," if not loop.last }}
        {%- endfor %}
    from days
    group by host_id, month_start
),

final as (
    select
        extremes.month_start,
        extremes.host_id,
        extremes.minutes_observed,
        extremes.samples,
        extremes.cpu_percent_peak,
        extremes.memory_total_bytes,
        {%- for column, aggregates in scalars.items() %}
        {%- for aggregate in aggregates %}
        {%- if aggregate == 'avg' %}
        averages.{{ column }}_avg,
        {%- else %}
        extremes.{{ column }}_{{ aggregate }},
        {%- endif %}
        {%- endfor %}
        {%- endfor %}
        {%- for metric in histograms %}
        extremes.{{ metric }}_count,
        (averages.{{ metric }}_sum / nullif(extremes.{{ metric }}_count, 0))::double precision as {{ metric }}_avg,
        extremes.{{ metric }}_min,
        extremes.{{ metric }}_max,
        quantiles.{{ metric }}_p50,
        quantiles.{{ metric }}_p95,
        quantiles.{{ metric }}_p99,
        {%- endfor %}
        {%- for name in thresholds %}
        extremes.{{ name }}_warning_minutes,
        extremes.{{ name }}_critical_minutes{{ "," if not loop.last }}
        {%- endfor %}
    from extremes
    left join averages
        on averages.host_id = extremes.host_id
        and averages.month_start = extremes.month_start
    left join quantiles
        on quantiles.host_id = extremes.host_id
        and quantiles.month_start = extremes.month_start
)

select * from final
