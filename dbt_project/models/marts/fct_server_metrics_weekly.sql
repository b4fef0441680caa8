{{
    config(
        unique_key='week_start',
        tags=['weekly'],
    )
}}

-- the model is the macro server_metrics (macros/server_metrics.sql) at the week grain
{{ server_metrics('week') }}
