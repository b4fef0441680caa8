{{
    config(
        unique_key='day',
        tags=['daily'],
    )
}}

-- the model is the macro overall_reliability (macros/reliability.sql) at the day grain
{{ overall_reliability('day') }}
