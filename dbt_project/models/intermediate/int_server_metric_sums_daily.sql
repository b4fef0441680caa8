{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        unique_key='day',
        tags=['daily'],
    )
}}

{#- What the month's server means need and fct_server_metrics_daily cannot give: per server and UTC day the exact
    sum and the number of reports carrying each gauge and each of the reports' own percentiles that the marts
    average (the daily mart keeps the mean as a double, and no count per field). -#}
{%- set gauges = server_gauges() %}
{%- set percentiles = server_report_percentiles() %}

with reports as (
    select * from {{ ref('stg_game_servers__server_reports') }}
    where {{ window_filter('reported_at', 'day') }}
),

final as (
    select
        {{ utc_date('reported_at') }} as day,
        server_id,
        {%- for column in gauges %}
        sum({{ column }}::numeric) as {{ column }}_sum,
        count({{ column }}) as {{ column }}_count,
        {%- endfor %}
        {%- for name, spec in percentiles.items() if 'mean' in spec[1] %}
        sum({{ spec[0] }}::numeric) as {{ name }}_sum,
        count({{ spec[0] }}) as {{ name }}_count{{ "," if not loop.last }}
        {%- endfor %}
    from reports
    group by 1, 2
)

select * from final
