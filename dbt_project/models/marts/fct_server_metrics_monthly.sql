{{
    config(
        unique_key='month_start',
        tags=['monthly'],
    )
}}

{#- The month from the daily tables, never raw: reports, minutes and breach counts add up over the days (a report
    and a minute belong to one day), extremes are the days' extremes, and every mean is the month's exact sum over
    the reports that carry the field divided by their number (int_server_metric_sums_daily), never a mean of
    daily means. -#}
{%- set gauges = server_gauges() %}
{%- set percentiles = server_report_percentiles() %}
{%- set thresholds = server_thresholds() %}

with days as (
    select
        *,
        {{ utc_date(period_start("day::timestamp at time zone 'UTC'", 'month')) }} as month_start
    from {{ ref('fct_server_metrics_daily') }}
    where {{ window_filter_date('day', 'month') }}
),

day_sums as (
    select
        *,
        {{ utc_date(period_start("day::timestamp at time zone 'UTC'", 'month')) }} as month_start
    from {{ ref('int_server_metric_sums_daily') }}
    where {{ window_filter_date('day', 'month') }}
),

means as (
    select
        server_id,
        month_start,
        {%- for column in gauges %}
        (sum({{ column }}_sum) / nullif(sum({{ column }}_count), 0))::double precision as {{ column }}_avg,
        {%- endfor %}
        {%- for name, spec in percentiles.items() if 'mean' in spec[1] %}
        (sum({{ name }}_sum) / nullif(sum({{ name }}_count), 0))::double precision as {{ name }}_mean{{ "," if not loop.last }}
        {%- endfor %}
    from day_sums
    group by server_id, month_start
),

totals as (
    select
        server_id,
        month_start,
        sum(reports)::bigint as reports,
        sum(minutes_observed)::bigint as minutes_observed,
        {%- for column, type in gauges.items() %}
        min({{ column }}_min)::{{ type }} as {{ column }}_min,
        max({{ column }}_max)::{{ type }} as {{ column }}_max,
        {%- endfor %}
        {%- for name, spec in percentiles.items() if 'max' in spec[1] %}
        max({{ name }}_max)::double precision as {{ name }}_max,
        {%- endfor %}
        {%- for name in thresholds %}
        sum({{ name }}_warning_reports)::bigint as {{ name }}_warning_reports,
        sum({{ name }}_critical_reports)::bigint as {{ name }}_critical_reports,
        sum({{ name }}_warning_minutes)::bigint as {{ name }}_warning_minutes,
        sum({{ name }}_critical_minutes)::bigint as {{ name }}_critical_minutes{{ "," if not loop.last }}
        {%- endfor %}
    from days
    group by server_id, month_start
),

final as (
    select
        totals.month_start,
        totals.server_id,
        totals.reports,
        totals.minutes_observed,
        {%- for column in gauges %}
        means.{{ column }}_avg,
        totals.{{ column }}_min,
        totals.{{ column }}_max,
        {%- endfor %}
        {%- for name, spec in percentiles.items() %}
        {%- for statistic in spec[1] %}
        {%- if statistic == 'mean' %}
        means.{{ name }}_mean,
        {%- else %}
        totals.{{ name }}_max,
        {%- endif %}
        {%- endfor %}
        {%- endfor %}
        {%- for name in thresholds %}
        totals.{{ name }}_warning_reports,
        totals.{{ name }}_critical_reports,
        totals.{{ name }}_warning_minutes,
        totals.{{ name }}_critical_minutes{{ "," if not loop.last }}
        {%- endfor %}
    from totals
    left join means
        on means.server_id = totals.server_id
        and means.month_start = totals.month_start
)

select * from final
