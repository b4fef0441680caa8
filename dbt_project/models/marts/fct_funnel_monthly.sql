{{
    config(
        unique_key='month_start',
        tags=['monthly'],
    )
}}

-- depends_on: {{ ref('funnels') }}

with chosen as (
    {{ funnel_calendar_choices('month') }}
),

summary as (
    {{ funnel_summary('chosen', 'month_start') }}
)

select * from summary
