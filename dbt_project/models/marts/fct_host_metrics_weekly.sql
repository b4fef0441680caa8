{{
    config(
        unique_key='week_start',
        tags=['weekly'],
    )
}}

-- the model is the macro host_metrics (macros/host_metrics.sql) at the week grain
{{ host_metrics('week') }}
