{{
    config(
        unique_key='hour_start',
        tags=['hourly', 'reliability'],
    )
}}

-- the model is the macro channel_reliability (macros/reliability.sql) at the hour grain
{{ channel_reliability('hour') }}
