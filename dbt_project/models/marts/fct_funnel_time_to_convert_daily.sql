{{
    config(
        unique_key='day',
        tags=['daily'],
    )
}}

{#- the window, and with it whether the macros below read late arrivals, is known only when the model runs,
    not when dbt parses it: the dependency is declared here, outside any condition -#}
{%- do ref('stg_product__event_arrivals') %}

-- depends_on: {{ ref('funnels') }}

{#- The entry days int_funnel_attempts recomputed in this run (macros/product.sql), as fct_funnel_daily. -#}
{%- set bounds = window_period_bounds('day') %}

with chosen as (
    select
        entry_day as day,
        funnel,
        depth,
        step_seconds
    from {{ ref('int_funnel_attempts') }}
    where is_chosen
    {%- if bounds is not none %}
    {%- set earliest = bounds.lower - modules.datetime.timedelta(days=product_late_arrival_days() + 1) %}
        and entry_day >= '{{ earliest.date().isoformat() }}'::date
        and entry_day < '{{ bounds.upper.date().isoformat() }}'::date
        and entry_day in ({{ funnel_reopened_days(ref('funnels')) }})
    {%- endif %}
),

summary as (
    {{ funnel_time_to_convert('chosen', 'day') }}
)

select * from summary
