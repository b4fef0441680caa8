{{
    config(
        unique_key='quarter_start',
        tags=['monthly'],
    )
}}

-- the model is the macro telemetry_rollup_of_months (macros/calendar_rollups.sql) at the quarter grain; a monthly
-- run rebuilds the quarter that holds its month
{{ telemetry_rollup_of_months('quarter') }}
