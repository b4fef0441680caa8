{{
    config(
        unique_key='hour_start',
        tags=['hourly', 'reliability'],
    )
}}

-- the model is the macro overall_reliability (macros/reliability.sql) at the hour grain
{{ overall_reliability('hour') }}
