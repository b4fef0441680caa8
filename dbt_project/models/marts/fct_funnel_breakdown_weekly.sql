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

-- the same chosen attempts as fct_funnel_weekly, whose rows these sum to (data test
-- funnel_breakdowns_sum_to_overall reads it after this model)
-- depends_on: {{ ref('fct_funnel_weekly') }}

with chosen as (
    {{ funnel_chosen_in_window('week') }}
),

summary as (
    {{ funnel_summary('chosen', 'week_start', breakdown=true) }}
)

select * from summary
