{{
    config(
        unique_key='day',
        tags=['daily', 'reliability'],
    )
}}

-- the model is the macro channel_reliability (macros/reliability.sql) at the day grain
{{ channel_reliability('day') }}
