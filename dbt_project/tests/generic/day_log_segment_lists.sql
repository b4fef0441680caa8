{#-
  A jsonb column of segment lists holds exactly `lists` lists, each of segment_count
  (= 1440 / segment_minutes) entries. With `sections`, the lists are one level down, under
  those keys (day_log: battles.*, user_counts.*, ...); without, the column is a map of lists.
  A missing section or list, or one that is not an array, counts as a wrong one.
-#}
{% test day_log_segment_lists(model, column_name, lists, sections=none) %}
    with lists as (
        select
            day,
            segment_count,
            segment_minutes,
            {%- if sections is none %}
            series.key as series,
            {%- else %}
            section.name || '.' || series.key as series,
            {%- endif %}
            case when jsonb_typeof(series.value) = 'array' then jsonb_array_length(series.value) end as entries
        from {{ model }}
        {%- if sections is none %}
        cross join lateral jsonb_each({{ column_name }}) as series
        {%- else %}
        cross join unnest(array[{% for s in sections %}'{{ s }}'{{ ", " if not loop.last }}{% endfor %}]) as section (name)
        cross join lateral jsonb_each(coalesce({{ column_name }} -> section.name, '{}'::jsonb)) as series
        {%- endif %}
    ),

    per_day as (
        select
            day,
            segment_count,
            segment_minutes,
            count(*) filter (where entries = segment_count) as good_lists
        from lists
        group by day, segment_count, segment_minutes
    )

    select
        model_rows.day,
        model_rows.segment_count,
        model_rows.segment_minutes,
        coalesce(per_day.good_lists, 0) as good_lists
    from {{ model }} as model_rows
    left join per_day on per_day.day = model_rows.day
    where coalesce(per_day.good_lists, 0) <> {{ lists }}
       or model_rows.segment_count * model_rows.segment_minutes <> 1440
{% endtest %}
