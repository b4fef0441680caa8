{{
    config(
        unique_key='year_start',
        tags=['monthly'],
    )
}}

-- the model is the macro telemetry_rollup_of_months (macros/calendar_rollups.sql) at the year grain; a monthly
-- run rebuilds the year that holds its month
{{ telemetry_rollup_of_months('year') }}
