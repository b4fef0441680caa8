{{
    config(
        unique_key='day',
        pre_hook=reliability_planner_settings('day'),
        tags=['daily', 'reliability'],
    )
}}

-- the model is the macro channel_reliability (macros/reliability.sql) at the day grain
{{ channel_reliability('day') }}
