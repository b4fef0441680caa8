{{
    config(
        unique_key='hour_start',
        tags=['hourly'],
    )
}}

-- the model is the macro host_metrics (macros/host_metrics.sql) at the hour grain
{{ host_metrics('hour') }}
