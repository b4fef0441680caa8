{{
    config(
        unique_key='week_start',
        pre_hook=reliability_planner_settings('week'),
        tags=['weekly', 'reliability'],
    )
}}

-- the model is the macro channel_reliability (macros/reliability.sql) at the week grain
{{ channel_reliability('week') }}
