{{
    config(
        unique_key='hour_start',
        pre_hook=reliability_planner_settings(),
        tags=['hourly', 'reliability'],
    )
}}

-- the model is the macro channel_reliability (macros/reliability.sql) at the hour grain
{{ channel_reliability('hour') }}
