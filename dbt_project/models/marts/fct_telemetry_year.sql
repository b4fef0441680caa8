{{
    config(
        unique_key='year_start',
        tags=['monthly'],
    )
}}

-- the model is the macro telemetry_rollup (macros/calendar_rollups.sql) of the months; a monthly
-- run rebuilds the year that holds its month
{{ telemetry_rollup('year', of='month') }}
