{{
    config(
        unique_key='minute_start',
        tags=['hourly'],
    )
}}

-- the model is the macro server_metrics (macros/server_metrics.sql) at the minute grain
{{ server_metrics('minute') }}
