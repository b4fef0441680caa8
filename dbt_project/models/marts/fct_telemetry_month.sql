{{
    config(
        unique_key='month_start',
        tags=['monthly'],
    )
}}

{#- The month's rows of the daily marts only, never raw: by the time a month has ended, the weekly cleanup has
    dropped most of its raw partitions. That is why there is no `battles` column: distinct battle ids over a
    month would need the snapshots, and a sum of the daily distinct counts would count a battle that spans
    midnight twice. The model is the macro telemetry_rollup (macros/calendar_rollups.sql) of the days. -#}
{{ telemetry_rollup('month', of='day') }}
