{#- Every segment list of the day-log document has exactly segment_count (= 1440 / segment_minutes) entries. -#}
{% test day_log_segment_lists(model, column_name) %}
    with lists as (
        select
            day,
            segment_count,
            segment_minutes,
            section.key as section,
            series.key as series,
            jsonb_array_length(series.value) as entries
        from {{ model }}
        cross join lateral jsonb_each({{ column_name }}) as section
        cross join lateral jsonb_each(section.value) as series
        where section.key in ('battles', 'user_counts', 'average_user_counts', 'peak_user_counts')
    )

    select
        *
    from lists
    where entries <> segment_count
       or segment_count * segment_minutes <> 1440
{% endtest %}
