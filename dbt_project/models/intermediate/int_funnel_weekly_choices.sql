{{
    config(
        tags=['weekly'],
    )
}}

-- Drill-down of fct_funnel_weekly: the attempt chosen per funnel, user and UTC week.
{{ funnel_period_choices('week') }}
