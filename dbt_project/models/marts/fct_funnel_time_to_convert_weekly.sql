{{
    config(
        unique_key='week_start',
        tags=['weekly'],
    )
}}

{#- the window, and with it whether the macros below read late arrivals, is known only when the model runs,
    not when dbt parses it: the dependency is declared here, outside any condition -#}
{%- do ref('stg_product__event_arrivals') %}
{%- do ref('funnels') %}

{#- The weeks of the entry days int_funnel_attempts recomputed in this run, as fct_funnel_weekly. -#}
{%- set bounds = window_period_bounds('week') %}

with chosen as (
    {%- if bounds is none %}
    {{ funnel_weekly_choices() }}
    {%- else %}
    {%- set earliest = bounds.lower - modules.datetime.timedelta(days=product_late_arrival_days() + 7) %}
    {{ funnel_weekly_choices(
        "attempts.entry_day >= '" ~ earliest.date().isoformat() ~ "'::date"
        ~ " and attempts.entry_day < '" ~ bounds.upper.date().isoformat() ~ "'::date"
        ~ " and date_trunc('week', attempts.entry_day::timestamp) in ("
        ~ "select date_trunc('week', reopened.day::timestamp) from (" ~ funnel_reopened_days(ref('funnels')) ~ ") as reopened)"
    ) }}
    {%- endif %}
),

summary as (
    {{ funnel_time_to_convert('chosen', 'week_start') }}
)

select * from summary
