{{
    config(
        unique_key='month_start',
        tags=['monthly'],
    )
}}

-- depends_on: {{ ref('funnels') }}

with chosen as (
    {{ funnel_period_choices('month', window_filter_date('attempts.entry_day', 'month')) }}
),

summary as (
    {{ funnel_summary('chosen', 'month_start') }}
)

select * from summary
