{{
    config(
        unique_key='week_start',
        tags=['weekly', 'reliability'],
    )
}}

-- the model is the macro overall_reliability (macros/reliability.sql) at the week grain
{{ overall_reliability('week') }}
