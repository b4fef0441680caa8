{{
    config(
        tags=['monthly'],
    )
}}

-- Drill-down of fct_funnel_monthly: the attempt chosen per funnel, user and UTC calendar month.
{{ funnel_period_choices('month') }}
