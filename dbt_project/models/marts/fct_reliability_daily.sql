{{
    config(
        unique_key='day',
        tags=['daily', 'reliability'],
    )
}}

-- the model is the macro overall_reliability (macros/reliability.sql) at the day grain
{{ overall_reliability('day') }}
