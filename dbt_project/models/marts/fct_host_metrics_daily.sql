{{
    config(
        unique_key='day',
        tags=['daily'],
    )
}}

-- the model is the macro host_metrics (macros/host_metrics.sql) at the day grain
{{ host_metrics('day') }}
