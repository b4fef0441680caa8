{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        unique_key='day',
        tags=['daily'],
    )
}}

{#- What the month's host averages need and fct_host_metrics_daily cannot give: the exact sum and the number of
    minutes carrying each averaged metric (a day's mean, stored as a double and weighed by minutes_observed,
    would be neither exact nor right for a metric some minutes lack), and each distribution's exact sum. -#}
{%- set scalars = host_scalar_metrics() %}

with host_minutes as (
    select * from {{ ref('stg_hosts__host_minutes') }}
    where {{ window_filter('minute', 'day') }}
),

final as (
    select
        {{ utc_date('minute') }} as day,
        host_id,
        {%- for column, aggregates in scalars.items() if 'avg' in aggregates %}
        sum({{ column }}::numeric) as {{ column }}_sum,
        count({{ column }}) as {{ column }}_count,
        {%- endfor %}
        {%- for metric in host_histogram_metrics() %}
        sum(({{ metric }} ->> 'sum')::numeric) as {{ metric }}_sum{{ "," if not loop.last }}
        {%- endfor %}
    from host_minutes
    group by 1, 2
)

select * from final
