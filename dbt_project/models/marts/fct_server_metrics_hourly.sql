{{
    config(
        unique_key='hour_start',
        tags=['hourly'],
    )
}}

-- the model is the macro server_metrics (macros/server_metrics.sql) at the hour grain
{{ server_metrics('hour') }}
