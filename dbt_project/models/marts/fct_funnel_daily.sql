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

with chosen as (
    {{ funnel_chosen_in_window('day') }}
),

summary as (
    {{ funnel_summary('chosen', 'day') }}
)

select * from summary
