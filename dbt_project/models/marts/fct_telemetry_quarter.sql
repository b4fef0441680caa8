{{
    config(
        unique_key='quarter_start',
        tags=['monthly'],
    )
}}

-- the model is the macro telemetry_rollup (macros/calendar_rollups.sql) of the months; a monthly
-- run rebuilds the quarter that holds its month
{{ telemetry_rollup('quarter', of='month') }}
