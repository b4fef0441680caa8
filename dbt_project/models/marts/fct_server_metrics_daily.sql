{{
    config(
        unique_key='day',
        tags=['daily'],
    )
}}

-- the model is the macro server_metrics (macros/server_metrics.sql) at the day grain
{{ server_metrics('day') }}
