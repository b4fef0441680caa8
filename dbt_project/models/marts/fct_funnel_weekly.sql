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

with chosen as (
    {{ funnel_chosen_in_window('week') }}
),

summary as (
    {{ funnel_summary('chosen', 'week_start') }}
)

select * from summary
